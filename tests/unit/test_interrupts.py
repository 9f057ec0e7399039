"""A signal during a held block lands after it, so a commit and its index follow are never split."""

from __future__ import annotations

import os
import signal
import threading
from collections.abc import Iterator

import pytest

from searchapp.interrupts import HELD, held_interrupts


@pytest.fixture(autouse=True)
def interruptible() -> Iterator[None]:
    """Ctrl-C and SIGTERM raising KeyboardInterrupt, as in the CLI, whatever the process was
    started with: a shell's background job inherits SIGINT ignored, and held_interrupts rightly
    leaves an ignored signal ignored."""
    previous = {n: signal.signal(n, signal.default_int_handler) for n in HELD}
    yield
    for number, handler in previous.items():
        signal.signal(number, handler)


@pytest.mark.parametrize("number", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_in_the_block_is_raised_after_it(number: int) -> None:
    steps = []
    with pytest.raises(KeyboardInterrupt), held_interrupts():
        os.kill(os.getpid(), number)
        steps.append("after the signal")  # still runs: the block is whole
    assert steps == ["after the signal"]
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # restored
    assert signal.getsignal(signal.SIGTERM) is signal.default_int_handler


def test_no_signal_raises_nothing_and_other_threads_pass_through() -> None:
    with held_interrupts():
        pass
    errors: list[BaseException] = []

    def worker() -> None:
        try:
            with held_interrupts():  # signal.signal would raise outside the main thread
                pass
        except BaseException as exc:
            errors.append(exc)

    thread = threading.Thread(target=worker)
    thread.start()
    thread.join()
    assert errors == []


def test_a_nested_block_is_part_of_the_outer_one() -> None:
    """commit_batch holds interrupts, and an indexing run calls it inside its own held commit:
    a signal in the inner block must not cut the outer one short."""
    steps = []
    with pytest.raises(KeyboardInterrupt), held_interrupts():
        with held_interrupts():
            os.kill(os.getpid(), signal.SIGINT)
            steps.append("inner done")
        steps.append("outer done")  # the inner block did not raise
    assert steps == ["inner done", "outer done"]
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
