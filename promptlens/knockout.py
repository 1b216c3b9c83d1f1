"""Attention knockout: leave-one-out estimates that recompute only the prompt's tail per segment.

Exact leave-one-out of segment i recomputes every token after segment i (the prefix trie shares
only what comes before it). Knockout keeps the keys and values of the original prompt, computed
once, and for the variant without segment i reruns only the tail (the last message, which holds
the case's fields, and the target) with attention from the tail to segment i's token positions
switched off. The prompt positions between segment i and the tail keep what they read from
segment i; that, and that the tail keeps its original positions, is the approximation. Its
error is measured, never assumed: the approximate modes' check re-measures the top k exactly,
and ``benchmarks/long_prompt.py`` compares whole rankings with exact leave-one-out.

Segments with tokens inside the tail (the question's own text) cannot be knocked out of a cached
prefix: they are measured by exact leave-one-out instead (cheap: they lie at the end).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Sequence

import numpy as np

from .errors import InputError
from .segments import fill
from .templates import content_offsets, for_backend, is_messages, message_at
from .types import Case, Segment

if TYPE_CHECKING:
    from .backends.base import Backend, LocalBackend

NEEDS_LOCAL = ("--mode knockout reruns the prompt's tail on the model's cached keys and values; it needs a local "
               "model (the embedded one, or --model PATH); use --mode hierarchical or surrogate with this backend")


def _ranges(positions: Sequence[int]) -> list[tuple[int, int]]:
    """Sorted positions -> merged [start, end) ranges."""
    out: list[tuple[int, int]] = []
    for p in positions:
        if out and out[-1][1] == p:
            out[-1] = (out[-1][0], p + 1)
        else:
            out.append((p, p + 1))
    return out


def _tail_start(text: str, segments: Sequence[Segment], owners: Sequence[int | None], common: int,
                window: int = 0) -> int:
    """Where a case's tail starts: after the last token owned by a segment of a message before
    the last ``window + 1`` (a message template: the tail is the last message with the case's
    fields, and ``window`` messages before it), or where the cases' token sequences part (a
    plain prompt), whichever is earlier; at least 1."""
    start = common
    if is_messages(text):
        last = message_at(text, len(text) - 1) - window
        earlier = [p for p, o in enumerate(owners) if o is not None and message_at(text, segments[o].start) < last]
        start = min(start, earlier[-1] + 1 if earlier else 0)
    return max(1, min(start, len(owners) - 1))


def _common_prefix(seqs: Sequence[Sequence[int]]) -> int:
    n = min(len(s) for s in seqs)
    for p in range(n):
        if any(s[p] != seqs[0][p] for s in seqs):
            return p
    return n


def knockout_values(backend: Backend, segments: Sequence[Segment], feats: Sequence[int], cases: Sequence[Case],
                    objective: str, window: int = 0) -> tuple[np.ndarray, np.ndarray, dict]:
    """The objective per case with each feature knocked out, [cases, features]; which features
    lie (partly) in the tail and so need exact leave-one-out instead (their values here are
    NaN); and a record (tail tokens, knockout sequences). ``window``: messages before the last
    that are rerun with it (a longer tail: dearer, closer to exact)."""
    from .scoring import _score, continuations, objective_value

    scorer = getattr(backend, "scorer", None)
    if scorer is None or not hasattr(scorer, "score_hidden") or not hasattr(backend, "tokenizer"):
        raise InputError(NEEDS_LOCAL)
    text = "".join(s.text for s in segments)
    owned = []
    for case in cases:
        ids, owners = token_owners(backend, segments, case)  # type: ignore[arg-type]
        if ids != backend.encode_prompt(for_backend(backend, fill(text, case.vars))):  # type: ignore[attr-defined]
            raise InputError(f"{NEEDS_LOCAL.split(';')[0]}, and this backend's tokens could not be mapped to "
                             "the prompt's segments; use --mode hierarchical or surrogate")
        owned.append((ids, owners))
    common = _common_prefix([ids for ids, _ in owned])
    index = {seg: f for f, seg in enumerate(feats)}
    in_tail = np.zeros(len(feats), dtype=bool)
    starts = [_tail_start(text, segments, owners, common, window) for _, owners in owned]
    for (ids, owners), t0 in zip(owned, starts):
        for o in owners[t0:]:
            if o is not None and o in index:
                in_tail[index[o]] = True
    knock = [f for f in range(len(feats)) if not in_tail[f]]
    targets = [[backend.encode_target(t) for t in continuations(case)] for case in cases]  # type: ignore[attr-defined]
    values = np.full((len(cases), len(feats)), np.nan)
    groups: dict[tuple[int, ...], list[int]] = {}
    for c, ((ids, _), t0) in enumerate(zip(owned, starts)):
        groups.setdefault(tuple(ids[:t0]), []).append(c)
    sequences = tail_tokens = 0
    for prefix, members in groups.items():
        tails, n_targets, hidden, where = [], [], [], []
        for c in members:
            ids, owners = owned[c]
            t0 = len(prefix)
            for f in knock:
                ranges = _ranges([p for p in range(t0) if owners[p] == feats[f]])
                for j, tgt in enumerate(targets[c]):
                    tails.append(ids[t0:] + tgt)
                    n_targets.append(len(tgt))
                    hidden.append(ranges)
                    where.append((c, f, j))
        if not tails:
            continue
        scores = scorer.score_hidden(list(prefix), tails, n_targets, hidden)
        sequences += len(tails)
        tail_tokens += sum(len(t) for t in tails)
        per: dict[tuple[int, int], list[list[float]]] = {}
        for (c, f, j), row in zip(where, scores):
            per.setdefault((c, f), []).append(row)
        for (c, f), rows in per.items():
            values[c, f] = objective_value(_score(cases[c], rows), objective)
    record = {"window": window, "knocked_out": len(knock), "exact_in_tail": int(in_tail.sum()), "prefixes": len(groups),
              "tail_tokens_mean": round(float(np.mean([len(ids) - t0 for (ids, _), t0 in zip(owned, starts)])), 1),
              "knockout_sequences": sequences}
    return values, in_tail, record


__all__ = ["NEEDS_LOCAL", "knockout_values"]


def token_owners(backend: LocalBackend, segments: Sequence[Segment], case: Case) -> tuple[list[int], list[int | None]]:
    """Prompt token ids for a case and, per token, the index of the segment its first char is in."""
    spans, pieces, pos = [], [], 0
    for seg in segments:
        text = case.vars[seg.name] if seg.kind == "field" and seg.name is not None else fill(seg.text, case.vars)
        spans.append((pos, pos + len(text)))
        pieces.append(text)
        pos += len(text)
    filled = "".join(pieces)
    rendered = backend.render(filled)
    blocks = content_offsets(rendered, filled)  # where each message's text landed in the rendering
    enc = backend.tokenizer(rendered, add_special_tokens=backend.raw, return_offsets_mapping=True)
    owners: list[int | None] = []
    for start, end in enc["offset_mapping"]:
        char = next((a + start - r for r, a, n in blocks if r <= start < r + n), -1)
        owner = next((i for i, (a, b) in enumerate(spans) if a <= char < b and end > start), None)
        owners.append(owner)
    return enc["input_ids"], owners
