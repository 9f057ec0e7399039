"""The readers of both indexing stages: a thread pool reading ahead, results back in order."""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Generator, Iterator
from concurrent.futures import Executor, Future
from typing import Any, TypeVar

Result = TypeVar("Result")
Item = tuple[Any, ...]


def read_ahead(
    pool: Executor,
    read: Callable[..., Result],
    items: Iterator[Item],
    retry: deque[Item],
    in_flight: int,
) -> Generator[Result, None, None]:
    """read(*item) for every item, in order, at most `in_flight` reads ahead. An item the caller
    puts in `retry` while it handles a result is read before the rest. Reads still pending when
    the caller stops (close the iterator: contextlib.closing) are cancelled."""
    pending: deque[Future[Result]] = deque()

    def fill() -> None:
        while len(pending) < in_flight:
            item = retry.popleft() if retry else next(items, None)
            if item is None:
                return
            pending.append(pool.submit(read, *item))

    try:
        fill()
        while pending:
            result = pending.popleft().result()
            fill()  # the readers go on while the caller handles, encodes and commits
            yield result
            fill()  # what the caller put in `retry`
    finally:
        for future in pending:
            future.cancel()
