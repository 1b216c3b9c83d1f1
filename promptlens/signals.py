"""The one signal handler: SIGTERM stops a run like Ctrl-C, and during a study the first signal
waits for the trial in progress (a storage write cut in half can hang or lose the interrupt)."""

from __future__ import annotations

import contextlib
import signal
import threading
from typing import Callable, Iterator


@contextlib.contextmanager
def interrupts(*, deferred: bool = False) -> Iterator[Callable[[], None]]:
    """The one signal handler: a kill (SIGTERM) stops the run like Ctrl-C (SIGINT), with a
    KeyboardInterrupt, so finished trials are kept and the best so far is written.

    ``deferred`` (during a study): a KeyboardInterrupt that lands inside a storage write can leave
    it half done (seen: a hang, a SQLAlchemy traceback, an interrupt swallowed); so the first
    signal only sets a flag, raised by the ``check()`` this yields (called before each trial) and
    on the way out, and a second one stops at once. Off the main thread signals cannot be handled:
    nothing changes there."""
    if threading.current_thread() is not threading.main_thread():
        yield lambda: None
        return
    pending: list[int] = []

    def handle(signum: int, frame: object) -> None:
        if pending or not deferred:
            raise KeyboardInterrupt
        pending.append(signum)

    def check() -> None:
        if pending:
            raise KeyboardInterrupt

    signals = (signal.SIGINT, signal.SIGTERM) if deferred else (signal.SIGTERM,)
    old = {sig: signal.getsignal(sig) for sig in signals}
    for sig in old:
        signal.signal(sig, handle)
    try:
        yield check
    finally:
        for sig, handler in old.items():
            signal.signal(sig, handler)
    check()  # a signal during the last trial
