"""The wire form of a fan-out's query and answer (query/remote.py): what a server sends is
what the client reads, field for field, its paths written HOST:PORT:/path."""

from __future__ import annotations

import base64
import json
from dataclasses import replace
from pathlib import Path

import pytest

from searchapp.errors import QueryError
from searchapp.query import remote
from searchapp.query.search import Query, SearchHit, SearchResults, Term
from searchapp.records import EncoderIdentity, Filters, RegionHit

VIDEO = SearchHit(
    path="/videos/a day at the beach.mp4",
    score=0.8125,
    kind="frame",
    bbox=(0, 0, 1280, 720),
    label=None,
    taken_at=1.7e9,
    labels=(("seashore, coast", 0.61), ("sandbar", 0.2)),
    verified="geometry",
    image_id=42,
    photo_size=(1280, 720),
    time=12.5,
    moments=((12.5, 0.8125), (40.0, 0.7)),
)


def test_an_answer_reads_back_as_it_was_sent() -> None:
    region = RegionHit(7, 42, VIDEO.path, "frame", VIDEO.bbox, None, 1.7e9, 0.8125, (1280, 720))
    photo = replace(VIDEO, path="/photos/cat.jpg", time=None, moments=(), verified=None)
    results = SearchResults(
        [VIDEO, photo], "vector", ["a note"], [region], checked=2, spaces=[[photo], [VIDEO]]
    )
    identity = EncoderIdentity("cnn:efficientnet-lite0", "imagenet", 1280, "resize 224")
    wire = json.loads(json.dumps(remote.answer_to_wire(results, identity, None)))
    wire["hits"][0]["added_later"] = "by a newer server"  # left out, not refused
    answer = remote.answer_from_wire(wire, "shard2:8765")
    far = "shard2:8765:"
    assert answer.results.hits == [
        replace(VIDEO, path=far + VIDEO.path),
        replace(photo, path=far + photo.path),
    ]
    assert answer.results.spaces == [[answer.results.hits[1]], [answer.results.hits[0]]]
    assert answer.results.region_hits == [replace(region, path=far + region.path)]
    assert (answer.results.notes, answer.results.checked) == (["a note"], 2)
    assert (answer.identity, answer.tile_identity) == (identity, None)


def test_a_query_travels_with_its_images_bytes(tmp_path: Path) -> None:
    photo = tmp_path / "my photo\\caf\udce9.jpg"  # a backslash, a byte that is not UTF-8
    photo.write_bytes(b"\xff\xd8 the bytes of a photo")
    query = Query(
        terms=(Term("image", str(photo)), Term("text", "dogs", -0.5)),
        filters=Filters(after=1.5e9, formats=("JPEG",), tags=(("cat", "tabby"),)),
        k=7,
        kinds=("scene", "tile"),
        include_self=True,
        verify=False,
    )
    there = tmp_path / "server"
    there.mkdir()
    wire = json.loads(json.dumps(remote.query_to_wire(query), ensure_ascii=False).encode())
    held = {(str(photo), photo.read_bytes())}  # the server's library holds the photo itself
    received, names = remote.query_from_wire(wire, str(there), lambda *known: known in held)
    written = there / "query-0"
    itself = Term("image", str(written), indexed_as=str(photo))  # left out of the answer
    assert received == replace(query, terms=(itself, query.terms[1]))
    assert written.read_bytes() == photo.read_bytes()
    assert names == {str(written): "my photo\\caf\udce9.jpg"}  # as it was, shown once printed
    # other bytes from that path: the client's photo there is not the server's
    wire["terms"][0]["value"] = base64.b64encode(b"another photo").decode()
    received, _ = remote.query_from_wire(wire, str(there), lambda *known: known in held)
    assert received.terms[0].indexed_as is None  # shown, as any other photo
    wire["terms"][0]["value"] = "not base64!"
    with pytest.raises(QueryError, match="not a fan-out query"):
        remote.query_from_wire(wire, str(there), lambda *known: False)
    with pytest.raises(QueryError, match="not a fan-out query"):
        remote.query_from_wire({"terms": []}, str(there), lambda *known: False)


def test_an_address_is_checked_and_its_token_kept_out_of_its_name() -> None:
    far = remote.RemoteLibrary("http://10.0.0.2:8765/?token=abc")
    assert (far.base, far.host) == ("http://10.0.0.2:8765/", "10.0.0.2:8765")
    for bad in ("http:///photos", f"http://{'a' * 64}.example/", "http://a..b/", "http://h:0/"):
        with pytest.raises(QueryError, match="an address is http://HOST:PORT/"):
            remote.RemoteLibrary(bad)
    assert remote.RemoteLibrary("http://[::1]/")._port == 80  # not the address's last group
    # a password and a token stay out of every message and path; a path prefix stays in
    behind = remote.RemoteLibrary("https://me:pw@gw:8443/shard1/?token=abc")
    assert (behind.base, behind.host) == ("https://gw:8443/shard1/", "gw:8443/shard1")
    with pytest.raises(QueryError) as refused:
        remote.RemoteLibrary("http://me:pw@gw:99999/?token=abc")
    assert "pw" not in str(refused.value) and "abc" not in str(refused.value)


def test_a_query_a_server_cannot_answer_as_asked_is_refused(tmp_path: Path) -> None:
    """A field it does not know (a newer client's filter: dropped, it would widen the answer
    unseen), kinds it has no index of, a filter of the wrong type, k past its cap."""
    wire = remote.query_to_wire(Query(terms=(Term("text", "dogs"),)))

    def refused(change: dict[str, object], why: str) -> None:
        with pytest.raises(QueryError, match=why):
            remote.query_from_wire({**wire, **change}, str(tmp_path), lambda *known: False)

    refused({"filters": {**wire["filters"], "lens": "50mm"}}, r"not know: \['lens'\]")
    refused({"colour": "red"}, r"not know: \['colour'\]")
    refused({"kinds": ["scene", "faces"]}, "kinds .*faces.*: give some of")
    refused({"filters": {**wire["filters"], "min_width": "wide"}}, "filter min_width is 'wide'")
    refused({"filters": ["after"]}, "not a fan-out query")
    refused({"k": 10**9}, "this server answers from 1 to 10000 photos")


def test_a_name_that_is_not_utf8_travels_and_a_malformed_answer_is_refused() -> None:
    odd = replace(VIDEO, path="/photos/caf\udce9.jpg")  # a Latin-1 name, as Python decodes it
    # a note naming it, and one with a backslash: back as they were, shown once where printed
    notes = ["1 photo of /photos/caf\udce9.jpg is waiting", "C:\\photos is far"]
    results = SearchResults([odd], "vector", notes=notes)
    sent = json.dumps(remote.answer_to_wire(results, None, None), ensure_ascii=False)
    received = remote.answer_from_wire(json.loads(sent.encode("utf-8")), "nas:8765")
    assert received.results.hits[0].path == "nas:8765:/photos/caf\udce9.jpg"
    assert received.results.notes == notes
    for field, bad in (
        ("score", "0.9"),
        ("agreement", "0.9"),
        ("inliers", True),
        ("bbox", {"x": 1}),
        ("verified", "trust me"),
        ("kind", {"a": "dict"}),  # would not hash where regions are merged
        ("labels", [["cat", "high"]]),
        ("taken_at", -9e10),  # the year -882: no calendar prints it
    ):
        wire = json.loads(sent)
        wire["hits"][0][field] = bad
        with pytest.raises(remote.MALFORMED):
            remote.answer_from_wire(wire, "nas:8765")
