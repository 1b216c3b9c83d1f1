"""``python -m tests.slow_fix ARGS``: the ``promptlens`` command line with the fake backend and
Jaccard similarity, every trial slowed down by ``PROMPTLENS_TEST_TRIAL_DELAY`` seconds (default
0.2), so a test can kill a ``fix`` run in the middle of its study without loading a model."""

from __future__ import annotations

import importlib
import os
import sys
import time

import promptlens.backends.hf as hf
from promptlens.cli import main

from .fakes import FakeBackend, JaccardSimilarity

DELAY = float(os.environ.get("PROMPTLENS_TEST_TRIAL_DELAY", "0.2"))


class SlowSimilarity(JaccardSimilarity):
    """Each trial computes one whole-template similarity, memoised scores or not: sleep there."""

    def cosine(self, a: str, b: str) -> float:
        time.sleep(DELAY)
        return super().cosine(a, b)

    def cosines(self, reference: str, others):  # candidate filtering: not per trial, not slowed
        return [JaccardSimilarity.cosine(self, reference, o) for o in others]


hf.load_backend = lambda *args, **kwargs: FakeBackend()
importlib.import_module("promptlens.fix").Similarity = SlowSimilarity

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
