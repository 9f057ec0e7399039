"""The library routes: counts, failed files, the folders the page may index; an index run
started through the API and followed as server-sent events, stopped, or refused."""

from __future__ import annotations

import json
import shutil
import threading
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from searchapp.library import Library
from searchapp.web.app import create_app
from searchapp.web.index_runs import IndexRuns
from tests.integration.helpers import index


def _events(client: TestClient, url: str) -> list[dict[str, Any]]:
    events = []
    with client.stream("GET", url) as stream:
        assert stream.headers["content-type"].startswith("text/event-stream")
        kind = None
        for line in stream.iter_lines():
            if line.startswith("event: "):
                kind = line[7:]
            elif line.startswith("data: "):
                event = json.loads(line[6:])
                assert event["type"] == kind
                events.append(event)
    return events


def test_state_and_a_run_followed_to_its_end(library: Any, photos: Path, tmp_path: Path) -> None:
    (photos / "broken.jpg").write_bytes(b"\xff\xd8\xff not a whole jpeg")
    index(library, photos)
    client = TestClient(create_app(library, folders=[str(tmp_path / "photos")]))
    state = client.get("/api/library").json()
    assert state["stats"]["images"] == 5
    assert state["folders"] == [str(photos)]
    assert [Path(f["path"]).name for f in state["failures"]] == ["broken.jpg"]
    assert state["failures"][0]["reason"] and state["runs"] == []

    shutil.copy(photos / "animals" / "cat.jpg", photos / "things" / "cat_again.png")
    (photos / "broken.jpg").unlink()
    started = client.post("/api/index", json={"folder": str(photos)})
    assert started.status_code == 202, started.text
    events = _events(client, started.json()["events"])
    progress = [e for e in events if e["type"] == "progress"]
    assert progress and progress[-1]["done"] == progress[-1]["total"] >= 1
    assert {"stage", "rate", "eta_seconds"} <= set(progress[-1])
    assert events[-1]["type"] == "done" and events[-1]["summary"]["new"] == 1
    assert events[-1]["summary"]["deleted"] == 0
    # the server's own library sees what the run wrote
    found = client.get("/api/search", params={"q": "cat", "k": 5}).json()["results"]
    assert str(photos / "things" / "cat_again.png") in {hit["path"] for hit in found}
    after = client.get("/api/library").json()
    assert after["stats"]["images"] == 6 and after["failures"] == []
    assert after["runs"][0]["finished"] and after["runs"][0]["result"]["type"] == "done"
    assert _events(client, started.json()["events"]) == events  # a late follower sees it all


def test_only_the_library_folders_and_a_busy_library_is_said(
    library: Any, photos: Path, tmp_path: Path
) -> None:
    index(library, photos)
    client = TestClient(create_app(library))
    elsewhere = client.post("/api/index", json={"folder": "/etc"})
    assert elsewhere.status_code == 400 and str(photos) in elsewhere.json()["error"]
    other = Library(library.directory)
    other.lock.acquire()  # a CLI `searchapp index` of the same library, say
    try:
        busy = client.post("/api/index", json={"folder": str(photos)})
        assert busy.status_code == 409 and "busy" in busy.json()["error"]
    finally:
        other.close()
    assert client.get("/api/index/7/events").status_code == 400


def test_a_stopped_run_keeps_what_it_committed(
    library: Any, photos: Path, gate: threading.Event
) -> None:
    index(library, photos / "animals")
    for number in range(12):
        shutil.copy(photos / "astronaut.jpg", photos / "animals" / f"astronaut{number}.jpg")
    client = TestClient(create_app(library))
    started = client.post("/api/index", json={"folder": str(photos / "animals")})
    assert started.status_code == 202
    # asked while the run waits at its first photo
    assert client.post(f"/api/index/{started.json()['run']}/stop").status_code == 200
    gate.set()
    events = _events(client, started.json()["events"])
    stopped = events[-1]["summary"]
    assert events[-1]["type"] == "done" and stopped["interrupted"]
    assert stopped["new"] < 12
    assert client.get("/api/library").json()["runs"][0]["finished"]
    again = client.post("/api/index", json={"folder": str(photos / "animals")})
    rest = _events(client, again.json()["events"])[-1]["summary"]
    assert (
        not rest["interrupted"] and stopped["new"] + rest["new"] == 12
    )  # nothing lost, nothing twice
    assert client.get("/api/library").json()["stats"]["images"] == 13


@pytest.fixture
def gate(monkeypatch: pytest.MonkeyPatch) -> threading.Event:
    """Runs started from the page wait at their first photo until the test sets this: what a
    test does meanwhile happens while the run goes on, with no race."""
    opened = threading.Event()
    plain = IndexRuns._callbacks

    def held(self: IndexRuns, run: Any) -> Any:
        callbacks = plain(self, run)
        advance = callbacks.on_advance

        def after_the_gate(n: int) -> None:
            assert opened.wait(60), "the test never opened the gate"
            advance(n)

        return replace(callbacks, on_advance=after_the_gate)

    monkeypatch.setattr(IndexRuns, "_callbacks", held)
    return opened


def test_searches_answer_while_a_run_goes_on(
    library: Any, photos: Path, gate: threading.Event
) -> None:
    index(library, photos)
    for number in range(8):
        shutil.copy(photos / "astronaut.jpg", photos / "things" / f"astronaut{number}.jpg")
    client = TestClient(create_app(library))
    started = client.post("/api/index", json={"folder": str(photos)})
    assert started.status_code == 202
    found = client.get("/api/search", params={"q": "cat", "k": 2})
    assert found.status_code == 200 and found.json()["results"]
    assert not client.get("/api/library").json()["runs"][0]["finished"]
    gate.set()
    events = _events(client, started.json()["events"])
    assert events[-1]["type"] == "done" and events[-1]["summary"]["new"] == 8
