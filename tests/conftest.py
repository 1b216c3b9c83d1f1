"""Shared fixtures. The real embedded model is loaded once per test session."""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import pytest
import torch

# On 2 busy cores, oversubscribed threads made one forward many times slower.
# PROMPTLENS_TEST_THREADS=1 leaves a core to another job.
torch.set_num_threads(int(os.environ.get("PROMPTLENS_TEST_THREADS", min(2, os.cpu_count() or 1))))


@pytest.fixture(scope="session")
def backend():
    from promptlens.backends.hf import load_backend

    return load_backend()


@pytest.fixture(scope="session")
def tokenizer(backend):
    return backend.tokenizer
