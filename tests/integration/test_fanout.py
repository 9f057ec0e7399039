"""One query over several libraries (`search --library A --library B`): the answers of one
library holding both folders, with each model loaded once and the pixel check run once. A
library on another machine (`--library http://HOST:PORT/`, which `searchapp serve` serves)
answers through a real HTTP server, here in a thread."""

from __future__ import annotations

import json
import re
import shutil
import socket
import threading
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from searchapp.encoders.base import EncoderOptions
from searchapp.errors import QueryError
from searchapp.ingest.regions import RegionOptions
from searchapp.library import Library
from searchapp.query import verify
from searchapp.query.fanout import search_libraries
from searchapp.query.remote import RemoteLibrary
from searchapp.query.search import Query, SearchResults, Term
from searchapp.records import EncoderIdentity
from searchapp.web.app import create_app
from tests.browser.chromium import serve
from tests.conftest import searchapp_here
from tests.integration.helpers import HYBRID, index

SCENES = replace(HYBRID, regions=RegionOptions(kinds=("scene",)))  # what fan-out merges alike


@pytest.fixture(scope="module")
def made(
    tmp_path_factory: pytest.TempPathFactory, sample_dir: Path, cnn_encoder
) -> tuple[tuple[Path, Path], tuple[Path, Path, Path]]:
    """The sample photos in two folders, a copy of the cat in each; a library of each folder,
    and one of both. Built once: the tests only read them."""
    root = tmp_path_factory.mktemp("fanout")
    first, second = root / "disk1", root / "disk2"
    (first / "animals").mkdir(parents=True)
    (first / "things" / "deep").mkdir(parents=True)
    second.mkdir()
    shutil.copy(sample_dir / "chelsea.jpg", first / "animals" / "cat.jpg")
    shutil.copy(sample_dir / "coffee.jpg", first / "things" / "coffee.jpg")
    shutil.copy(sample_dir / "rocket.jpg", first / "things" / "deep" / "rocket.jpg")
    for name in ("astronaut.jpg", "camera.jpg"):
        shutil.copy(sample_dir / name, second / name)
    shutil.copy(sample_dir / "chelsea.jpg", second / "cat copy.jpg")
    places = (root / "lib1", root / "lib2", root / "both")
    for place, folders in zip(places, ([first], [second], [first, second]), strict=True):
        with Library(place) as lib:
            lib._encoder = cnn_encoder
            lib.catalog.set_encoder_identity(cnn_encoder.identity)
            for folder in folders:
                index(lib, folder, options=SCENES)
    return (first, second), places


@pytest.fixture
def halves(made: tuple[tuple[Path, Path], tuple[Path, ...]]) -> tuple[Path, Path]:
    return made[0]


@pytest.fixture
def libraries(
    made: tuple[tuple[Path, Path], tuple[Path, ...]],
) -> Iterator[tuple[Library, Library, Library]]:
    """The libraries of each folder and of both, opened as a query process opens them: no
    writer, no model loaded."""
    opened = tuple(Library(place, create=False) for place in made[1])
    yield opened  # type: ignore[misc]
    for lib in opened:
        lib.close()


def _answers(results: SearchResults, far: str = "") -> list[tuple[str, float, str | None]]:
    """Path, score and verdict of each photo; those of the server `far` with their path there."""
    return [(hit.path.removeprefix(far), round(hit.score, 5), hit.verified) for hit in results]


def test_two_libraries_answer_as_one_library_of_both(
    libraries: tuple[Library, Library, Library], halves: tuple[Path, Path]
) -> None:
    one, two, both = libraries
    cat = str(halves[0] / "animals" / "cat.jpg")
    queries = [
        # the pixel check, once, on the merged top
        Query(terms=(Term("image", cat),), k=4, include_self=True),
        Query(terms=(Term("image", cat),), k=3, verify=False),
        Query(terms=(Term("text", "a cup of coffee"),), k=2),  # the CNN: matched by labels
        # an image big enough that a checked query decodes it larger: embedded as one library
        # embeds it when it checks pixels
        Query(terms=(Term("image", str(halves[1] / "camera.jpg")),), k=4),
    ]
    for query in queries:
        fanned = search_libraries([one, two], query)
        alone = search_libraries([both], query)
        assert _answers(fanned) == _answers(alone), query
        assert fanned.checked == alone.checked and fanned.mode == alone.mode
    fanned = search_libraries([one, two], queries[0])
    # the cat, and its copy on the other disk, confirmed by their pixels
    assert {fanned[0].path, fanned[1].path} == {cat, str(halves[1] / "cat copy.jpg")}
    assert fanned[0].verified == fanned[1].verified == "pixels"
    assert two._encoder is one._encoder  # the model loaded once
    encoder = one.encoder()
    embedded: list[int] = []
    encode = encoder.encode

    def counted(*args: Any, **kwargs: Any) -> Any:
        embedded.append(1)
        return encode(*args, **kwargs)

    encoder.encode = counted  # type: ignore[method-assign]
    search_libraries([one, two], queries[1])
    assert len(embedded) == 1  # and the query embedded once, not once a library


def test_a_library_on_another_machine_answers_as_if_it_were_here(
    libraries: tuple[Library, Library, Library],
    halves: tuple[Path, Path],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The second disk's library served over HTTP: the answers of one library of both, its
    photos shown as HOST:PORT:/path; it checks its own candidates' pixels."""
    one, two, both = libraries
    cat = str(halves[0] / "animals" / "cat.jpg")
    with serve(create_app(two)) as address:
        far = RemoteLibrary(address)
        shown = f"{far.host}:"
        for query in (
            Query(terms=(Term("image", cat),), k=3, verify=False),
            Query(terms=(Term("text", "a cup of coffee"),), k=2),  # the CNN: matched by labels
            Query(terms=(Term("image", str(halves[1] / "camera.jpg")),), k=4),  # checked, there
        ):
            fanned = search_libraries([one, far], query)
            alone = search_libraries([both], query)
            assert _answers(fanned, shown) == _answers(alone), query
            assert fanned.mode == alone.mode and fanned.notes == alone.notes
            assert fanned.checked == alone.checked
        # the query is a photo of the served library: left out there, as here
        assert f"{shown}{halves[1] / 'camera.jpg'}" not in [hit.path for hit in fanned]
        # both cats confirmed, one on each machine, with the evidence of each (the order by it:
        # test_fanout_merge; these two are the same bytes, and tie)
        itself = Query(terms=(Term("image", cat),), k=3, include_self=True)
        checked = search_libraries([one, far], itself)
        assert _answers(checked, shown) == _answers(search_libraries([both], itself))
        assert [hit.verified for hit in checked] == ["pixels", "pixels", None]
        assert checked[1].path == f"{shown}{halves[1] / 'cat copy.jpg'}"
        assert checked[1].agreement is not None and checked[1].agreement > 0.9
        assert checked.checked == 6  # all, under CANDIDATES
        # the libraries here are checked once, together, as one library checks its own (the
        # server's check runs in its own thread)
        checks: list[int] = []
        check = verify.check

        def counted(query: Any, places: list[Any], *rest: Any) -> Any:
            if threading.current_thread() is threading.main_thread():
                checks.append(len(places))
            return check(query, places, *rest)

        monkeypatch.setattr(verify, "check", counted)
        mixed = search_libraries([one, both, far], replace(itself, k=10))
        assert mixed.checked == len(mixed) == 9  # 6 photos here (a folder twice), 3 there
        assert checks == [6]
        assert [hit.verified for hit in mixed[:3]] == ["pixels"] * 3  # the cat, here and there
        monkeypatch.undo()
        # alone, without a library here: the server embeds the query (this process loads
        # no model for it)
        served_only = search_libraries([RemoteLibrary(address)], Query((Term("text", "cat"),)))
        assert served_only.hits[0].path == f"{shown}{halves[1] / 'cat copy.jpg'}"


def test_a_far_library_needs_its_token_and_one_that_is_down_leaves_a_note(
    libraries: tuple[Library, Library, Library],
    halves: tuple[Path, Path],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    one, two, _ = libraries
    query = Query(terms=(Term("image", str(halves[1] / "camera.jpg")),), k=7, verify=False)
    with serve(create_app(two, token="s3cret")) as address:
        with pytest.raises(QueryError, match=r"needs its token: give the address .*\?token="):
            search_libraries([one, RemoteLibrary(address)], query)
        far = RemoteLibrary(f"{address}/?token=s3cret")  # as `searchapp serve` prints it
        assert len(search_libraries([one, far], query)) == 5  # six photos but the query
        monkeypatch.setenv("SEARCHAPP_TOKEN", "s3cret")
        assert len(search_libraries([one, RemoteLibrary(address)], query)) == 5
        # a query image the server cannot read, named as the user named it
        broken = tmp_path / "not a photo.jpg"
        broken.write_bytes(b"\xff\xd8\xff no more")
        with pytest.raises(QueryError, match=r"not a photo\.jpg") as refused:
            search_libraries([far], Query(terms=(Term("image", str(broken)),)))
        assert "query-0" not in str(refused.value) and address in str(refused.value)
        # a served library of another model
        answer = far.ask
        clip = EncoderIdentity("clip:ViT-B-32", "openai", 512, "clip")
        monkeypatch.setattr(far, "ask", lambda wire: replace(answer(wire), identity=clip))
        other = f"library {re.escape(far.base)} holds vectors of clip"
        with pytest.raises(QueryError, match=other):
            search_libraries([one, far], query)
        with pytest.raises(QueryError, match="this server answers from 1 to 10000 photos"):
            search_libraries([one, far], replace(query, k=20_000))
        # not a fan-out route there (a proxy's other path, an old server): left out, with a note
        elsewhere = search_libraries([one, RemoteLibrary(f"{address}/photos/?token=s3cret")], query)
        assert elsewhere.notes == [
            f"library {address}/photos/ serves no fan-out search (is it a searchapp server, and "
            "as new as this one?); the others were searched"
        ]
    # the server gone: the others answer, and a note says which did not, without its token
    down = search_libraries([one, RemoteLibrary(f"{address}/?token=s3cret")], query)
    assert [hit.path for hit in down] == [hit.path for hit in search_libraries([one], query)]
    assert down.notes == [
        f"library {address}/ did not answer ([Errno 111] Connection refused); the others were "
        "searched"
    ]
    with pytest.raises(QueryError, match=r"no library answered: library .* did not answer"):
        search_libraries([RemoteLibrary(address)], query)
    for bad in ("http://127.0.0.1:99999/", "http://127.0.0.1:ssh/", "ftp://nas/"):
        with pytest.raises(QueryError, match="an address is http://HOST:PORT/"):
            RemoteLibrary(bad)
    # a port that speaks something else than HTTP
    with socket.create_server(("127.0.0.1", 0)) as other:
        talker = threading.Thread(target=_say_ssh, args=(other,), daemon=True)
        talker.start()
        ssh = search_libraries(
            [one, RemoteLibrary(f"http://127.0.0.1:{other.getsockname()[1]}")], query
        )
        assert [hit.path for hit in ssh] == [hit.path for hit in down]  # this library's
        assert "did not answer" in ssh.notes[0]


def _say_ssh(listening: socket.socket) -> None:
    connection, _ = listening.accept()
    with connection:
        connection.sendall(b"SSH-2.0-OpenSSH_9.2\r\n")
        connection.recv(65536)


def test_a_far_library_with_no_photos_yet_is_left_out_with_a_note(
    libraries: tuple[Library, Library, Library], halves: tuple[Path, Path], tmp_path: Path
) -> None:
    with Library(tmp_path / "new") as new, serve(create_app(new)) as address:
        query = Query(terms=(Term("text", "a cup of coffee"),), k=2)
        found = search_libraries([libraries[0], RemoteLibrary(address)], query)
        assert found.hits and found.notes[-1] == (
            f"library {address}/ has no photos yet; the others were searched"
        )


def test_libraries_of_two_encoders_are_refused(
    libraries: tuple[Library, Library, Library], tmp_path: Path, halves: tuple[Path, Path]
) -> None:
    other = Library(tmp_path / "other")
    other.catalog.set_encoder_identity(EncoderIdentity("clip:ViT-B-32", "openai", 512, "clip"))
    query = Query(terms=(Term("image", str(halves[1] / "camera.jpg")),), k=3)
    with pytest.raises(QueryError, match="scores of two encoders do not compare"):
        search_libraries([libraries[0], other], query)
    with pytest.raises(QueryError, match="-k must be at least 1"):
        search_libraries(libraries[:2], replace(query, k=-3))
    empty = Library(tmp_path / "empty")  # a library whose first run has not begun
    found = search_libraries([libraries[0], empty], query)
    assert found.hits and found.notes == [
        f"library {empty.directory} has no photos yet; the others were searched"
    ]
    empty.close()
    like = Query(terms=(Term("like", str(halves[1] / "camera.jpg")),), k=3)
    with pytest.raises(QueryError, match="--like names a photo of one library"):
        search_libraries(libraries[:2], like)
    other.close()


def test_cli_searches_several_libraries(
    libraries: tuple[Library, Library, Library], halves: tuple[Path, Path]
) -> None:
    one, two, _ = libraries
    for lib in libraries:
        lib.close()
    places = ["--library", str(one.directory), "--library", str(two.directory)]
    cat = str(halves[0] / "animals" / "cat.jpg")
    found = searchapp_here("search", "--image", cat, "-k", "3", "--json", "--include-self", *places)
    assert found.returncode == 0, found.stderr
    paths = [Path(hit["path"]) for hit in json.loads(found.stdout)["results"]]
    assert paths[:2] == [halves[0] / "animals" / "cat.jpg", halves[1] / "cat copy.jpg"]
    # before the command as well as after it, as one --library goes
    table = searchapp_here(*places, "search", "--image", cat, "-k", "3")
    assert table.returncode == 0, table.stderr
    assert "cat copy.jpg" in table.stdout and "animals/cat.jpg" not in table.stdout  # itself
    assert "things/coffee.jpg" in table.stdout or "deep/rocket.jpg" in table.stdout  # from A
    # one after the command overrides those before it, as for every command
    overridden = searchapp_here(*places, "search", "--image", cat, "--library", places[3])
    assert overridden.returncode == 0 and "cat copy.jpg" in overridden.stdout
    assert "things/" not in overridden.stdout  # the first library's other photos
    refused = searchapp_here("stats", *places)
    assert refused.returncode == 2 and "several --library go with `search` only" in refused.stderr
    sorted_ = searchapp_here("search", "--image", cat, "--sort", "uniqueness", *places)
    assert sorted_.returncode == 2 and "--sort" in sorted_.stderr
    with Library(two.directory, create=False) as served, serve(create_app(served)) as address:
        places[3] = address
        found = searchapp_here("search", "--image", cat, "-k", "3", "--json", *places)
        assert found.returncode == 0, found.stderr
        far = f"{address.removeprefix('http://')}:"
        copy = f"{far}{halves[1] / 'cat copy.jpg'}"
        assert json.loads(found.stdout)["results"][0]["path"] == copy
        table = searchapp_here("search", "--image", cat, "-k", "3", *places)
        assert table.returncode == 0, table.stderr
        assert copy in table.stdout
        assert "no longer on disk" not in table.stderr  # the served photos are not paths here
        elsewhere = searchapp_here("stats", "--library", address)
        assert elsewhere.returncode == 2
        assert "a library on another machine, which `search` asks" in elsewhere.stderr


def test_clip_libraries_merge_each_space_before_fusing_them(
    tmp_path: Path, photos: Path, tiny_clip_checkpoint: Path
) -> None:
    """A CLIP library keeps its tiles in the CNN's space, and one library ranks photos by rank
    across its two spaces: several libraries are merged space by space, by score within each,
    then fused as one library fuses its spaces. The answers are those of one library of both."""
    first, second = tmp_path / "a", tmp_path / "b"
    first.mkdir()
    second.mkdir()
    shutil.copy(photos / "things" / "coffee.jpg", first / "coffee.jpg")
    shutil.copy(photos / "camera.jpg", first / "camera.jpg")
    shutil.copy(photos / "astronaut.jpg", second / "astronaut.jpg")
    options = replace(HYBRID, regions=RegionOptions(kinds=("scene", "tile"), vectors="pooled"))
    clip = EncoderOptions(clip_weights=tiny_clip_checkpoint)
    places = (tmp_path / "lib_a", tmp_path / "lib_b", tmp_path / "lib_both")
    for place, folders in zip(places, ([first], [second], [first, second]), strict=True):
        with Library(place) as lib:
            for folder in folders:
                index(lib, folder, options=options, encoder="clip:tiny-test", encoder_options=clip)
    opened = [Library(place, create=False) for place in places]
    try:
        assert opened[0].catalog.tile_identity() is not None  # tiles in the CNN's space
        crop = tmp_path / "crop.jpg"
        with Image.open(second / "astronaut.jpg") as image:
            image.crop((280, 40, 480, 240)).save(crop, quality=90)
        for verify in (False, True):
            query = Query(terms=(Term("image", str(crop)),), k=5, verify=verify)
            fanned = search_libraries(opened[:2], query)
            alone = search_libraries(opened[2:], query)
            # the same photos in the same order; scores within what each library's own 8-bit
            # codes of its tiles move them (a range per library: 3e-4 here)
            assert [a[::2] for a in _answers(fanned)] == [a[::2] for a in _answers(alone)]
            assert [a[1] for a in _answers(fanned)] == pytest.approx(
                [a[1] for a in _answers(alone)], abs=0.005
            )
            # first in the CNN's tiles; the tiny CLIP's ranking is noise, and the check confirms
            top = [hit.path for hit in fanned][: 1 if verify else 2]
            assert str(second / "astronaut.jpg") in top
        # the second library on another machine: each space's ranking travels, merged the same
        with serve(create_app(opened[1])) as address:
            far = RemoteLibrary(address)
            query = Query(terms=(Term("image", str(crop)),), k=5, verify=False)
            fanned = search_libraries([opened[0], far], query)
            alone = search_libraries(opened[2:], query)
            assert [a[::2] for a in _answers(fanned, f"{far.host}:")] == [
                a[::2] for a in _answers(alone)
            ]
    finally:
        for lib in opened:
            lib.close()
