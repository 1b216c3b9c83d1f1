"""Fakes whose answers are known exactly: a backend and a similarity model without any model."""

from __future__ import annotations

from typing import Sequence

from promptlens.errors import InputError
from promptlens.similarity import JaccardSimilarity

__all__ = ["FakeBackend", "JaccardSimilarity", "BANANA_PENALTY"]

BANANA_PENALTY = 3.0


class FakeBackend:
    """Log-prob rules: every whitespace token of a target costs 1 nat, and 3 more nats in total
    when the prompt contains the word "banana" (the planted harmful word). ``good_word``, when
    set, is helpful: a target gains 0.5 nats when the prompt contains it.

    ``generate`` "paraphrases" the last line of its prompt by replacing "banana" with "fruit".
    """

    name = "fake"

    def __init__(self, good_word: str | None = None) -> None:
        self.good_word = good_word
        self.forward_passes = 0
        self.tokens_computed = 0
        self.prompts_scored: list[str] = []

    def token_logprobs(self, prompts: Sequence[str], targets: Sequence[Sequence[str]]) -> list[list[list[float]]]:
        self.forward_passes += 1
        out = []
        for prompt, ts in zip(prompts, targets):
            self.prompts_scored.append(prompt)
            rows = []
            for t in ts:
                if not t.strip():  # as every real backend does (tests/test_backend_contract.py)
                    raise InputError(f"target {t!r} is empty; give a non-empty target")
                tokens = [-1.0] * max(1, len(t.split()))
                self.tokens_computed += len(prompt.split()) + len(tokens)
                if "banana" in prompt.lower():
                    tokens[0] -= BANANA_PENALTY
                if self.good_word and self.good_word in prompt.lower():
                    tokens[0] += 0.5
                rows.append(tokens)
            out.append(rows)
        return out

    def generate(self, prompt: str, max_new_tokens: int = 32) -> str:
        return prompt.strip().splitlines()[-1].replace("banana", "fruit")
