"""A progress bar on stderr for model work, counted in the scorer's forward passes.

The convention of every job (``fix`` and ``bench`` count trials and steps the same way): tqdm on
stderr, ``leave=False``, shown only when the job is asked to (the command line asks when stderr
is a terminal). ``attribute`` and ``lint`` cannot know up front how many passes their scoring
takes (the prefix trie decides, and Shapley or LIME ask as they go), so the scorer reports: each
time it cuts a call into forward passes it adds them to the bar's total (``planned``) and ticks
one as each finishes (``advance``). The bar is found through a context variable, so the scorers
need no argument for it and a call outside ``bar()`` costs one lookup.
"""

from __future__ import annotations

import contextlib
from contextvars import ContextVar
from typing import Any, Iterator

_BAR: ContextVar[Any] = ContextVar("promptlens_progress_bar", default=None)


@contextlib.contextmanager
def bar(desc: str, enabled: bool) -> Iterator[Any]:
    """A bar of forward passes for the model work inside the ``with``; None when not ``enabled``."""
    if not enabled:
        yield None
        return
    from tqdm import tqdm

    shown = tqdm(total=0, desc=desc, unit="pass", leave=False)
    token = _BAR.set(shown)
    try:
        yield shown
    finally:
        _BAR.reset(token)
        shown.close()


def planned(passes: int) -> None:
    """The scorer is about to run ``passes`` more forward passes (or server requests)."""
    shown = _BAR.get()
    if shown is not None and passes > 0:
        shown.total += passes
        shown.refresh()


def advance(passes: int = 1) -> None:
    """``passes`` of the planned ones have finished."""
    shown = _BAR.get()
    if shown is not None:
        shown.update(passes)


__all__ = ["bar", "planned", "advance"]
