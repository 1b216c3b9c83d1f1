"""A fake backend whose scores follow written rules, so expected attributions are exact."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping, Sequence

from promptlens.errors import InputError


@dataclass
class RuleBackend:
    """log p(target | prompt) = -1 per target word, plus ``rules[w]`` for each word w in the prompt,
    plus ``bonus[(w, target)]`` when the prompt contains w and the target is that continuation.
    Word = whitespace-split, punctuation stripped, case-folded."""

    rules: Mapping[str, float] = field(default_factory=dict)
    bonus: Mapping[tuple[str, str], float] = field(default_factory=dict)
    name: str = "rules"
    forward_passes: int = 0
    tokens_computed: int = 0

    def _words(self, text: str) -> set[str]:
        return {w.strip(".,:;!?").lower() for w in text.split()}

    def token_logprobs(self, prompts: Sequence[str], targets: Sequence[Sequence[str]]) -> list[list[list[float]]]:
        self.forward_passes += 1
        out = []
        for prompt, ts in zip(prompts, targets):
            words = self._words(prompt)
            self.tokens_computed += len(prompt.split())
            shift = sum(v for w, v in self.rules.items() if w in words)
            row = []
            for t in ts:
                if not t.strip():  # as every real backend does (tests/test_backend_contract.py)
                    raise InputError(f"target {t!r} is empty; give a non-empty target")
                n = len(t.split())
                extra = sum(v for (w, tt), v in self.bonus.items() if w in words and tt == t)
                row.append([-1.0 + (shift + extra) / n] * n)
            out.append(row)
        return out

    def generate(self, prompt: str, max_new_tokens: int = 32) -> str:
        return "yes"
