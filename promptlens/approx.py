"""Approximate leave-one-out attribution for long prompts, each checked against exact at the end.

Exact leave-one-out scores one variant per segment. On a 40-segment, 1,500-token prompt that is
most of the cost, even with every shared prefix computed once. Three cheaper estimates:

* ``hierarchical`` (AttriBoT's pruning): ablate coarse units first (few-shot examples and
  messages of a message template, paragraphs, lines, then sentences when attributing words) and split a unit into its parts only where its effect is
  large or uncertain: where its interval reaches ``refine`` times the largest effect at its
  level. A unit left whole shares its effect equally among its segments.
* ``surrogate`` (ContextCite): score ``budget`` random ablation masks and fit a sparse linear
  model (Lasso, by coordinate descent, penalty picked by cross-validation) of the drop in the
  objective on which segments were ablated; the coefficients estimate the effects.
* ``proxy``: exact leave-one-out on a cheaper copy of the model (bfloat16 where the CPU has
  native bf16, int8 dynamic quantisation, or a smaller model from a folder); which copy is
  cheaper is measured on this machine, not assumed (see :mod:`promptlens.proxy`).

* ``knockout``: keep the original prompt's keys and values and rerun only its tail (the last
  message and the target) per segment, with the tail's attention to that segment's tokens
  switched off (see :mod:`promptlens.knockout`). It recomputes a few dozen tokens per variant
  where exact recomputes everything after the segment; the positions between the segment and
  the tail still carry what they read from it, so it is an approximation, measured like the others.

Whatever the mode, its ``verify_k`` most harmful segments are then measured by exact
leave-one-out on the target model, the estimate is compared with the exact numbers (the
agreement check every report shows), and those segments carry the exact numbers. Segments
still estimated are flagged and get no verdict.
"""

from __future__ import annotations

import re
from bisect import bisect_right
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Callable, Protocol, Sequence

import numpy as np
import numpy.typing as npt

from .errors import InputError
from .types import Approximation, Segment

if TYPE_CHECKING:
    from .backends.base import Backend

MODES = ("exact", "hierarchical", "surrogate", "proxy", "knockout")
APPROXIMATE = MODES[1:]
KNOCKOUT_BASELINE = ("--mode knockout estimates removing each segment (it hides the segment from the prompt's "
                     "tail); use --baseline remove, or another --mode for this baseline")
_PARAGRAPH = re.compile(r"\n[^\S\n]*\n")
Interval = Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]]  # values [cases, k] -> (low, high) [k]


@dataclass(frozen=True)
class ApproxConfig:
    """Settings of the approximate modes (ignored by ``mode="exact"``)."""

    verify_k: int = 5  # most harmful segments measured exactly at the end
    refine: float = 0.25  # hierarchical: split a unit whose interval reaches this share of the level's largest effect
    budget: int = 32  # surrogate: random ablation masks scored (each one forward per case, one at a time)
    ablate: float = 0.25  # surrogate: chance that a mask ablates a given segment
    proxy: str | Backend = "auto"  # proxy: "auto", "bfloat16", "int8", a model folder, or a backend object
    window: int = 0  # knockout: messages before the last that are rerun with it (and measured exactly)

    def check(self) -> None:
        if self.verify_k < 0:
            raise InputError(f"--verify-k {self.verify_k} is out of range; give 0 or more")
        if not 0.0 <= self.refine <= 1.0:
            raise InputError(f"--refine {self.refine} is out of range; give a share between 0 and 1")
        if self.budget < 2:
            raise InputError(f"--budget {self.budget} is out of range; give 2 or more ablation masks")
        if self.window < 0:
            raise InputError(f"--window {self.window} is out of range; give 0 or more messages")
        if not 0.0 < self.ablate < 1.0:
            raise InputError(f"ablate={self.ablate} is out of range; give a probability between 0 and 1")


@dataclass
class Estimate:
    """Per-case effects [cases, features], which of them are estimates, and the mode's record."""

    per_case: np.ndarray
    estimated: np.ndarray  # [features] bool
    variants: int = 0
    settings: dict = field(default_factory=dict)


class MaskScores(Protocol):
    """Attribution's memoised mask forward (``attribution.MaskForward``), as the modes use it:
    ``memo[mask]`` is the objective per case with the segments whose mask entry is 0 ablated."""

    memo: dict[tuple[int, ...], list[float]]

    def prefetch(self, keys: list[tuple[int, ...]]) -> None: ...


class Scorer:
    """What the modes need from attribution's memoised mask forward: effects of masks."""

    def __init__(self, forward: MaskScores, n_feats: int) -> None:
        self.forward = forward
        self.n_feats = n_feats
        self.full = (1,) * n_feats
        forward.prefetch([self.full])
        self.original = np.array(forward.memo[self.full])

    def effects(self, ablated: Sequence[Sequence[int]]) -> np.ndarray:
        """[len(ablated), cases]: objective with everything minus objective without those features."""
        sets = [set(int(f) for f in group) for group in ablated]
        keys = [tuple(0 if f in gone else 1 for f in range(self.n_feats)) for gone in sets]
        self.forward.prefetch(keys)
        return np.array([self.original - np.array(self.forward.memo[k]) for k in keys]).reshape(len(keys), -1)

    @property
    def variants(self) -> int:
        return len(self.forward.memo)


# --- hierarchical ----------------------------------------------------------------------------


@dataclass
class Unit:
    """A run of features that hierarchical mode ablates together, and its parts one level down."""

    feats: list[int]
    children: list[Unit] = field(default_factory=list)


def level_keys(segments: Sequence[Segment], feats: Sequence[int], segmentation: str) -> list[list[int]]:
    """Per level, coarse to fine, the unit id of each feature: for a message template the
    few-shot example (a user turn and its answer) or message, then the message; then the
    paragraph, the line, and the sentence when the features are finer than sentences. A
    feature belongs to the unit its first character is in."""
    from .templates import example_spans, is_messages, message_at, messages_of

    text = "".join(s.text for s in segments)
    starts = [segments[i].start for i in feats]
    levels: list[list[int]] = []
    if is_messages(text):
        message = [message_at(text, s) for s in starts]
        example = {i: first for first, last in example_spans(messages_of(text)) for i in range(first, last + 1)}
        levels += [[example.get(m, m) for m in message], message]
    breaks = [m.start() for m in _PARAGRAPH.finditer(text)]
    lines = [m.start() for m in re.finditer("\n", text)]
    levels += [[bisect_right(breaks, s) for s in starts], [bisect_right(lines, s - 1) for s in starts]]
    if segmentation in ("word", "token"):
        from .segments import segment

        sentence_starts = [s.start for s in segment(text, "sentence", edit_fields=True) if s.feature]
        levels.append([bisect_right(sentence_starts, s) for s in starts])
    return levels


def build_units(levels: Sequence[Sequence[int]], n_feats: int) -> list[Unit]:
    """The unit tree: top-level units, each split by the next level that splits it."""
    def split(feats: list[int], depth: int) -> list[Unit]:
        while depth < len(levels):
            groups: dict[tuple[int, ...], list[int]] = {}
            for f in feats:
                groups.setdefault(tuple(levels[d][f] for d in range(depth + 1)), []).append(f)
            depth += 1
            if len(groups) > 1:
                return [unit(g, depth) for g in groups.values()]
        return [Unit([f]) for f in feats]

    def unit(feats: list[int], depth: int) -> Unit:
        return Unit(feats, split(feats, depth) if len(feats) > 1 else [])

    return split(list(range(n_feats)), 0)


def hierarchical(scorer: Scorer, units: list[Unit], interval: Interval, refine: float) -> Estimate:
    """Ablate the units of each level at once; refine those whose interval reaches
    ``refine`` x the level's largest |mean effect| (large or uncertain); share the rest."""
    n_cases = len(scorer.original)
    per_case = np.zeros((n_cases, scorer.n_feats))
    estimated = np.ones(scorer.n_feats, dtype=bool)
    frontier, levels, refined = units, 0, 0
    while frontier:
        levels += 1
        eff = scorer.effects([u.feats for u in frontier]).T  # [cases, units]
        low, high = interval(eff)
        reach = np.maximum(np.abs(low), np.abs(high))
        scale = float(np.abs(eff.mean(0)).max())
        nxt: list[Unit] = []
        for j, u in enumerate(frontier):
            if len(u.feats) == 1:
                per_case[:, u.feats[0]] = eff[:, j]
                estimated[u.feats[0]] = False
            elif scale > 0 and reach[j] >= refine * scale:
                nxt.extend(u.children)
                refined += 1
            else:
                per_case[:, u.feats] = (eff[:, j] / len(u.feats))[:, None]
        frontier = nxt
    return Estimate(per_case, estimated, settings={"refine": refine, "levels": levels, "units_refined": refined,
                                                   "top_units": len(units)})


# --- surrogate -------------------------------------------------------------------------------


def lasso(x: np.ndarray, y: np.ndarray, alpha: float, iters: int = 200, tol: float = 1e-7) -> np.ndarray:
    """argmin_w ||y - x w||^2 / (2 n) + alpha ||w||_1 by cyclic coordinate descent; x, y centred."""
    n, p = x.shape
    w = np.zeros(p)
    norms = (x**2).sum(0) / n
    resid = y.copy()
    for _ in range(iters):
        biggest = 0.0
        for j in range(p):
            if norms[j] == 0:
                continue
            old = w[j]
            rho = x[:, j] @ resid / n + norms[j] * old
            w[j] = np.sign(rho) * max(abs(rho) - alpha, 0.0) / norms[j]
            if w[j] != old:
                resid -= x[:, j] * (w[j] - old)
                biggest = max(biggest, abs(w[j] - old))
        if biggest < tol:
            break
    return w


def _centred_fit(z: np.ndarray, y: np.ndarray, alpha: float) -> np.ndarray:
    zm, ym = z.mean(0), y.mean()
    return lasso(z - zm, y - ym, alpha)


def pick_alpha(z: np.ndarray, y: np.ndarray, folds: int = 5, seed: int = 0) -> float:
    """The Lasso penalty with the least cross-validated squared error on a log-spaced path."""
    n = len(y)
    top = float(np.abs((z - z.mean(0)).T @ (y - y.mean())).max() / n)
    if top == 0.0:
        return 0.0
    path = top * np.logspace(0, -3, 12)
    order = np.random.default_rng(seed).permutation(n)
    errors = np.zeros(len(path))
    for k in range(min(folds, n)):
        test = order[k::folds]
        train = np.setdiff1d(order, test)
        for a, alpha in enumerate(path):
            w = _centred_fit(z[train], y[train], alpha)
            pred = y[train].mean() + (z[test] - z[train].mean(0)) @ w
            errors[a] += float(((y[test] - pred) ** 2).sum())
    return float(path[int(np.argmin(errors))])


def surrogate(scorer: Scorer, budget: int, ablate: float, seed: int) -> Estimate:
    """Lasso of the drop in the objective on the ablation indicators of ``budget`` random masks
    (plus the full prompt, whose drop is 0). The penalty is picked once, on the case mean."""
    rng = np.random.default_rng(seed)
    z = rng.random((budget, scorer.n_feats)) < ablate
    for row in z:  # a mask that ablates nothing is the full prompt again: ablate one segment
        if not row.any():
            row[rng.integers(scorer.n_feats)] = True
    groups = [np.flatnonzero(row).tolist() for row in z]
    drops = scorer.effects(groups)  # [budget, cases]
    zf = np.vstack([z.astype(float), np.zeros(scorer.n_feats)])
    drops = np.vstack([drops, np.zeros(drops.shape[1])])
    alpha = pick_alpha(zf, drops.mean(1), seed=seed)
    per_case = np.stack([_centred_fit(zf, drops[:, c], alpha) for c in range(drops.shape[1])])
    return Estimate(per_case, np.ones(scorer.n_feats, dtype=bool),
                    settings={"budget": budget, "ablate": ablate, "alpha": alpha})


# --- proxy ----------------------------------------------------------------------------------


def proxy(backend: Backend, make_scorer: Callable[[Backend], Scorer], choice: str | Backend,
          sample: str = "") -> Estimate:
    """Exact leave-one-out on a cheaper copy of the model (``choice``: a name from
    :data:`promptlens.proxy.PROXIES`, a model folder, or a backend object to use as it is)."""
    cheap: Backend
    if isinstance(choice, str):
        from .proxy import choose_proxy

        cheap, record = choose_proxy(backend, choice, sample)
    else:
        cheap, record = choice, {"proxy": getattr(choice, "name", type(choice).__name__)}
    passes0 = getattr(cheap, "forward_passes", 0)
    scorer = make_scorer(cheap)
    per_case = scorer.effects([[f] for f in range(scorer.n_feats)]).T
    record = {**record, "proxy_forward_passes": getattr(cheap, "forward_passes", 0) - passes0}
    return Estimate(per_case, np.ones(scorer.n_feats, dtype=bool), settings=record)


# --- knockout -------------------------------------------------------------------------------

Knockout = Callable[[], tuple[np.ndarray, np.ndarray, dict]]  # () -> (values [cases, feats], in_tail, record)


def knockout(scorer: Scorer, values: np.ndarray, in_tail: np.ndarray, record: dict) -> Estimate:
    """Effects from the knocked-out objective values; features in the tail (``in_tail``) by exact
    leave-one-out instead, and so not estimates."""
    per_case = scorer.original[:, None] - np.asarray(values, dtype=float)
    tail = [int(f) for f in np.flatnonzero(in_tail)]
    if tail:
        per_case[:, tail] = scorer.effects([[f] for f in tail]).T
    return Estimate(per_case, ~np.asarray(in_tail, dtype=bool), settings=dict(record))


def estimate(mode: str, scorer: Scorer, *, segments: Sequence[Segment], feats: Sequence[int], segmentation: str,
             config: ApproxConfig, interval: Interval, seed: int, backend: Backend,
             make_scorer: Callable[[Backend], Scorer], sample: str = "",
             knockout_values: Knockout | None = None) -> Estimate:
    """The chosen approximate mode's estimate of every feature's leave-one-out effect."""
    if mode == "hierarchical":
        units = build_units(level_keys(segments, feats, segmentation), len(feats))
        return hierarchical(scorer, units, interval, config.refine)
    if mode == "surrogate":
        return surrogate(scorer, config.budget, config.ablate, seed)
    if mode == "proxy":
        return proxy(backend, make_scorer, config.proxy, sample)
    if mode == "knockout":
        if knockout_values is None:
            raise InputError("--mode knockout needs the prompt's segments and cases (call it through attribute)")
        return knockout(scorer, *knockout_values())
    raise InputError(f"unknown mode {mode!r}; choose one of: {', '.join(MODES)}")


# --- the check against exact -----------------------------------------------------------------


def verify(scorer: Scorer, est: Estimate, k: int) -> tuple[tuple[int, ...], np.ndarray, np.ndarray]:
    """Measure the ``k`` most harmful features by exact leave-one-out; returns them, their
    estimated means and their exact means, and puts the exact numbers into ``est``."""
    means = est.per_case.mean(0)
    top = [int(f) for f in np.argsort(means, kind="stable")[:k]]
    todo = [f for f in top if est.estimated[f]]
    if todo:
        exact = scorer.effects([[f] for f in todo]).T
        est.per_case[:, todo] = exact
        est.estimated[todo] = False
    return tuple(top), means[top], est.per_case[:, top].mean(0)


def spearman(a: npt.ArrayLike, b: npt.ArrayLike) -> float | None:
    """Spearman rank correlation (ties get their mean rank); None with fewer than 3 values or no spread."""
    x, y = np.asarray(a, float), np.asarray(b, float)
    if len(x) < 3:
        return None

    def ranks(v: np.ndarray) -> np.ndarray:
        order = np.argsort(v, kind="stable")
        r = np.empty(len(v))
        r[order] = np.arange(len(v), dtype=float)
        for value in np.unique(v):  # ties share their mean rank
            r[v == value] = r[v == value].mean()
        return r

    ra, rb = ranks(x), ranks(y)
    if ra.std() == 0 or rb.std() == 0:
        return None
    return float(np.corrcoef(ra, rb)[0, 1])


def approximation(mode: str, est: Estimate, verified: tuple[int, ...], approx_means: np.ndarray,
                  exact_means: np.ndarray, cost: tuple[int, int, int]) -> Approximation:
    """The record every report shows: cost on the target model and agreement on the verified."""
    signs = np.sign(approx_means) == np.sign(exact_means)
    return Approximation(
        mode=mode, variants=cost[0], forward_passes=cost[1], tokens_computed=cost[2], verified=verified,
        approx_means=tuple(float(v) for v in approx_means), exact_means=tuple(float(v) for v in exact_means),
        max_abs_diff=float(np.abs(approx_means - exact_means).max()) if verified else 0.0,
        sign_agreement=float(signs.mean()) if verified else 1.0,
        rank_agreement=spearman(approx_means, exact_means), exact_features=int((~est.estimated).sum()),
        settings=dict(est.settings),
    )


# --- agreement of a whole ranking with exact leave-one-out (benchmarks, tests) -----------------


def exact_top(values: Sequence[float], k: int) -> list[int]:
    """The ``k`` most harmful features by mean (stable order); of exact's values, the set exact's own
    ranking puts first."""
    return np.argsort(np.asarray(values), kind="stable")[:k].tolist()


def top_overlap(approx: Sequence[float], exact: Sequence[float], k: int) -> float:
    """Share of exact's k most harmful features that are among the approximation's k most harmful."""
    return len(set(exact_top(approx, k)) & set(exact_top(exact, k))) / k


def average_precision(approx: Sequence[float], relevant: Sequence[int]) -> float | None:
    """AP of the ``relevant`` features (e.g. exact's harmful set) in the approximation's ranking,
    most harmful first; None when nothing is relevant."""
    rel = set(int(r) for r in relevant)
    if not rel:
        return None
    hits, total = 0, 0.0
    for rank, f in enumerate(np.argsort(np.asarray(approx), kind="stable").tolist(), 1):
        if f in rel:
            hits += 1
            total += hits / rank
    return total / len(rel)


def agreement(approx: Sequence[float], exact: Sequence[float], harmful: Sequence[int]) -> dict:
    """Top-1 and top-3 overlap, Spearman over every feature, and two mAPs of exact's harmful set:
    ``map`` of the set exact calls harmful (interval below zero), which exact's own ranking by mean
    need not reach 1 on (a tight small effect is called, a wide large one is not), and ``map_top``
    of exact's ``len(harmful)`` most harmful by mean: as many as exact calls harmful, so exact scores
    1 on it by construction and 1 means "the same set first"."""
    return {"top1": top_overlap(approx, exact, 1), "top3": top_overlap(approx, exact, 3),
            "map": average_precision(approx, harmful),
            "map_top": average_precision(approx, exact_top(exact, len(harmful))),
            "spearman": spearman(approx, exact)}


__all__ = ["MODES", "APPROXIMATE", "KNOCKOUT_BASELINE", "ApproxConfig", "Estimate", "MaskScores", "Scorer", "Unit", "agreement", "exact_top",
           "approximation", "average_precision", "build_units", "estimate", "knockout", "proxy", "hierarchical", "lasso", "level_keys", "spearman",
           "surrogate", "top_overlap", "verify"]
