"""Ctrl-C and kill, held back while the catalog and its indexes move together."""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator
from typing import Any

HELD = (signal.SIGINT, signal.SIGTERM)
_depth: list[int] = []  # non-empty while the main thread holds interrupts


@contextlib.contextmanager
def held_interrupts() -> Iterator[None]:
    """Run the block whole, then raise KeyboardInterrupt if a signal came meanwhile.

    An interrupt that lands between a catalog commit and the index following it would leave the
    run to commit the same batch again, or save an index that is half a batch behind its
    generation. Signals are only handled in the main thread, so elsewhere this does nothing.
    Nested blocks are one block: only the outermost holds and raises."""
    if threading.current_thread() is not threading.main_thread() or _depth:
        yield
        return
    caught: list[int] = []
    previous: dict[signal.Signals, Any] = {}
    for number in HELD:
        handler = signal.getsignal(number)
        if callable(handler):  # not ignored, not the C default: Python would raise
            previous[number] = signal.signal(number, lambda signum, frame: caught.append(signum))
    _depth.append(1)
    try:
        yield
    finally:
        _depth.pop()
        for held, handler in previous.items():
            signal.signal(held, handler)
    if caught:
        raise KeyboardInterrupt
