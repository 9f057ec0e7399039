"""Index runs started from the page: one at a time, on a thread, with a Library of their own.

The run's Library has its own catalog connection, index store and encoder, so the server's
searches go on meanwhile against the index files they loaded; when the run ends, the server's
Library loads the new ones. Its progress is kept as a list of events that any number of
followers read from where they are (server-sent events, searchapp.web.routes_library).
"""

from __future__ import annotations

import itertools
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from searchapp.errors import LibraryBusyError, SearchappError, UsageError
from searchapp.ingest.pipeline import IndexCallbacks
from searchapp.library import Library

PROGRESS_EVERY = 0.5  # seconds between progress events


class _Stop(KeyboardInterrupt):
    """Raised from the run's own progress callback: the pipeline stops as on Ctrl-C, keeping
    what it committed."""


@dataclass
class IndexRunState:
    id: int
    folder: str
    started: float = field(default_factory=time.time)
    events: list[dict[str, Any]] = field(default_factory=list)
    finished: bool = False
    stop_asked: bool = False
    changed: threading.Condition = field(default_factory=threading.Condition)
    # progress of the current stage
    stage: str = "starting"
    total: int = 0
    done: int = 0
    stage_started: float = field(default_factory=time.monotonic)
    last_sent: float = 0.0

    def add(self, kind: str, **data: Any) -> None:
        with self.changed:
            self.events.append({"type": kind, "run": self.id, **data})
            self.changed.notify_all()

    def since(self, count: int) -> tuple[list[dict[str, Any]], bool]:
        with self.changed:
            return self.events[count:], self.finished

    def progress(self, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self.last_sent < PROGRESS_EVERY:
            return
        self.last_sent = now
        elapsed = now - self.stage_started
        rate = self.done / elapsed if elapsed > 0 else 0.0
        left = (self.total - self.done) / rate if rate > 0 else None
        self.add(
            "progress",
            stage=self.stage,
            done=self.done,
            total=self.total,
            rate=round(rate, 2),
            eta_seconds=round(left, 1) if left is not None else None,
        )

    def summary(self) -> dict[str, Any]:
        last = next((e for e in reversed(self.events) if e["type"] in ("done", "error")), None)
        return {
            "run": self.id,
            "folder": self.folder,
            "started": self.started,
            "finished": self.finished,
            "stage": self.stage,
            "done": self.done,
            "total": self.total,
            "result": last,
        }


class IndexRuns:
    def __init__(self, library: Library):
        self.library = library
        self.runs: dict[int, IndexRunState] = {}
        self._ids = itertools.count(1)
        self._starting = threading.Lock()

    def running(self) -> IndexRunState | None:
        return next((run for run in self.runs.values() if not run.finished), None)

    def start(self, folder: str, allowed: list[str]) -> IndexRunState:
        if folder not in allowed:
            raise UsageError(
                f"{folder!r} is not a folder of this library; index one of: {', '.join(allowed)} "
                "(or start `searchapp serve FOLDER` to offer another)"
            )
        with self._starting:
            if self.running() is not None:
                raise LibraryBusyError("an index run is going on; wait for it, or stop it")
            writer = Library(self.library.directory, self.library.db_url, create=False)
            try:
                writer.lock.acquire()  # busy now, in the request, rather than later on the thread
            except LibraryBusyError:
                writer.close()
                raise
            run = IndexRunState(next(self._ids), folder)
            self.runs[run.id] = run
        threading.Thread(target=self._run, args=(run, writer), daemon=True).start()
        return run

    def stop(self, run_id: int) -> IndexRunState:
        run = self.get(run_id)
        run.stop_asked = True
        return run

    def get(self, run_id: int) -> IndexRunState:
        if run_id not in self.runs:
            raise UsageError(f"no index run {run_id} in this server")
        return self.runs[run_id]

    def _callbacks(self, run: IndexRunState) -> IndexCallbacks:
        def stage(name: str, total: int) -> None:
            if run.total:
                run.progress(force=True)  # where the last stage ended, 20 of 20
            run.stage, run.total, run.done, run.stage_started = name, total, 0, time.monotonic()
            run.progress(force=True)

        def on_advance(n: int) -> None:
            if run.stop_asked:
                raise _Stop
            run.done += n
            run.progress()

        def on_regions(to_make: int) -> None:
            self.library.forget_loaded()  # every new photo has its scene: searches find them
            stage("regions", to_make)

        return IndexCallbacks(
            on_plan=lambda found, to_read: stage("indexing", to_read),
            on_regions=on_regions,
            on_advance=on_advance,
            on_failure=lambda path, reason: run.add("failure", path=path, reason=reason),
        )

    def _run(self, run: IndexRunState, writer: Library) -> None:
        try:
            summary = writer.index([run.folder], callbacks=self._callbacks(run))
            run.progress(force=True)
            run.add("done", summary=summary.as_dict())
        except SearchappError as exc:
            run.add("error", message=str(exc))
        except Exception as exc:  # the server goes on; the page says what broke
            run.add("error", message=f"{type(exc).__name__}: {exc}")
        finally:
            writer.close()
            self.library.forget_loaded()  # searches load what the run wrote
            with run.changed:
                run.finished = True
                run.changed.notify_all()
