"""promptlens.stats: exact small cases, multiplicity corrections, and calibration by simulation.

The calibration tests draw thousands of simulated prompts and case sets at once (numpy,
vectorised: seconds) from per-case effect distributions whose mean is known, including skewed and
heavy-tailed ones shaped like the embedded model's log-prob differences, and check the claims the
reports make: an interval covers the true mean at least as often as its level says, a clean
segment is called harmful at most as often as the level allows, and too few cases give no verdict.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from promptlens import stats
from promptlens.attribution import attribute
from promptlens.report import attribution_table
from promptlens.types import Case
from tests.rule_backend import RuleBackend

CONF = 0.95
ALPHA = 1 - CONF
SIMS = 4000
NS = (4, 8, 16, 32)


def _t3(r: np.random.Generator, size: tuple[int, ...]) -> np.ndarray:
    return r.standard_t(3, size)


def _skewed(r: np.random.Generator, size: tuple[int, ...]) -> np.ndarray:
    """Log-normal (sigma 0.25; skewness 0.78), centred: a few cases move more than the rest. The
    plain t-interval covers 0.94 here at n = 4-8; the skew-adjusted one at least 0.95. At skewness
    1.75 (sigma 0.5) it covers 0.94 at n = 4-8 (benchmarks/README.md, "Statistics calibration")."""
    return r.lognormal(0, 0.25, size) - np.exp(0.25 ** 2 / 2)


def _lp_diff(r: np.random.Generator, size: tuple[int, ...]) -> np.ndarray:
    """A log-prob difference: the gap between two Gumbel-distributed log-likelihoods, the
    difference skewed by a 1-in-5 extra drop (exponential, 0.5 nats); centred."""
    base = r.gumbel(0, 0.3, size) - r.gumbel(0, 0.3, size)
    return base - (r.random(size) < 0.2) * r.exponential(0.5, size) + 0.2 * 0.5


# name -> sampler with true mean 0 (effects are then shifted by a known amount)
SHAPES = {"normal": lambda r, s: r.normal(0, 1, s), "t3": _t3, "skewed": _skewed, "skewed-": lambda r, s: -_skewed(r, s),
          "lp-diff": _lp_diff}


def _draw(shape: str, n: int, sims: int, seed: int = 0) -> np.ndarray:
    return SHAPES[shape](np.random.default_rng(seed), (n, sims))  # [cases, simulated segments]


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("n", NS)
def test_interval_covers_known_effects_at_least_nominally(shape, n):
    effect = -0.7  # every case's effect is shifted by a known amount
    iv = stats.intervals(_draw(shape, n, SIMS) + effect, confidence=CONF)
    covered = float(((iv.low <= effect) & (effect <= iv.high)).mean())
    # Monte-Carlo standard error of a 95% share over 4000 draws is 0.0034: allow 2 of them.
    assert covered >= CONF - 0.007, (shape, n, covered)


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("n", NS)
def test_clean_segments_are_rarely_called_harmful(shape, n):
    iv = stats.intervals(_draw(shape, n, SIMS, seed=1), confidence=CONF)
    calls = np.array([stats.verdict(m, p, n, CONF) for m, p in zip(iv.mean, iv.p_value)])
    assert (calls == "harmful").mean() <= ALPHA, (shape, n)
    assert np.isin(calls, ["harmful", "helpful"]).mean() <= ALPHA + 0.007, (shape, n)


@pytest.mark.parametrize("correction", ["bh", "holm"])
def test_a_clean_prompt_rarely_gets_any_false_call_after_correction(correction):
    prompts, segments, n = 1000, 20, 8
    p = stats.intervals(_draw("lp-diff", n, prompts * segments, seed=2)).p_value.reshape(prompts, segments)
    raw_any = (p < ALPHA).any(1).mean()
    adjusted_any = np.mean([(stats.adjust(row, correction) < ALPHA).any() for row in p])
    assert raw_any > 0.4  # 20 uncorrected tests: most clean prompts get a false call
    assert adjusted_any <= ALPHA + 0.014, adjusted_any  # 2 standard errors over 1000 prompts


def test_bh_and_holm_adjusted_p_values_exact():
    p = [0.01, 0.04, 0.03, 0.005]
    assert stats.adjust(p, "holm") == pytest.approx([0.03, 0.06, 0.06, 0.02])
    assert stats.adjust(p, "bh") == pytest.approx([0.02, 0.04, 0.04, 0.02])
    assert stats.adjust(p, "none") == pytest.approx(p)
    # BH never rejects less than Holm
    assert all(b <= h + 1e-12 for b, h in zip(stats.adjust(p, "bh"), stats.adjust(p, "holm")))


def test_t_interval_exact_numbers():
    iv = stats.intervals(np.array([1.0, 2.0, 3.0, 4.0]), method="t")
    half = 3.182446305284263 * np.std([1, 2, 3, 4], ddof=1) / 2  # t(0.975, 3) * sd / sqrt(4)
    assert (iv.low[0], iv.high[0]) == pytest.approx((2.5 - half, 2.5 + half))
    assert iv.n == 4 and iv.confidence == 0.95 and iv.method == "t"
    # A symmetric sample has no skewness: the skew-adjusted interval is the t-interval.
    sk = stats.intervals(np.array([1.0, 2.0, 3.0, 4.0]))
    assert sk.method == "skew-t" and (sk.low[0], sk.high[0]) == pytest.approx((2.5 - half, 2.5 + half))


def test_skew_adjusted_interval_reaches_toward_the_long_tail():
    x = np.array([0.0, 0.1, -0.1, 0.05, 3.0])  # one case far out on the right
    t, sk = stats.intervals(x, method="t"), stats.intervals(x)
    assert sk.low[0] == pytest.approx(t.low[0]) and sk.high[0] > t.high[0]
    assert sk.p_value[0] >= t.p_value[0]
    # one-sided: the lower of the t and Hall bounds; a left tail pulls it below the t bound
    t_low = (-x).mean() - 2.131846786326649 * x.std(ddof=1) / np.sqrt(5)  # t(0.95, 4)
    assert stats.lower_bound(-x) < t_low
    assert stats.lower_bound(x) == pytest.approx(x.mean() - 2.131846786326649 * x.std(ddof=1) / np.sqrt(5))


@pytest.mark.parametrize("n", [1, 2, 3])
def test_too_few_cases_give_no_verdict_however_large_the_effect(n):
    iv = stats.intervals(np.full((n, 1), -5.0) + np.arange(n)[:, None] * 0.01)
    assert stats.verdict(float(iv.mean[0]), float(iv.p_value[0]), n, CONF) == stats.TOO_FEW
    assert not stats.significant([5.0] * n)
    if n == 1:
        assert iv.low[0] == -np.inf and iv.high[0] == np.inf


def test_one_case_attribution_prints_effects_without_verdicts_and_says_why():
    fake = RuleBackend(rules={"banana": -3.0})
    result = attribute("Answer the question. Say banana. Be brief.", "yes", backend=fake)
    banana = next(f for f in result.features if "banana" in f.segment.text)
    assert banana.mean == -3.0 and not banana.harmful and banana.verdict == stats.TOO_FEW
    assert not result.has_verdicts and any("too few to tell" in n for n in result.notes)
    table = attribution_table(result)
    assert "no verdicts: 1 case: too few to tell harmful from helpful (a verdict needs at least 4)" in table
    assert "harmful" not in table.split("\n", 4)[-1].replace("harmful from helpful", "")


def test_two_cases_give_no_verdict_either():
    fake = RuleBackend(rules={"banana": -3.0})
    cases = [Case({"input": str(i)}, "yes") for i in range(2)]
    result = attribute("Q {input}. Say banana. Be brief.", cases=cases, backend=fake)
    assert all(f.verdict == stats.TOO_FEW and f.n_cases == 2 for f in result.features)


def test_level_method_and_correction_are_stored_and_printed():
    fake = RuleBackend(rules={"banana": -3.0})
    cases = [Case({"input": str(i)}, "yes") for i in range(5)]
    result = attribute("Q {input}. Say banana. Be brief.", cases=cases, backend=fake, confidence=0.9,
                       correction="holm")
    assert (result.confidence, result.interval, result.correction, result.n_cases) == (0.9, "skew-t", "holm", 5)
    assert all((f.confidence, f.interval, f.correction, f.n_cases) == (0.9, "skew-t", "holm", 5)
               for f in result.features)
    table = attribution_table(result)
    assert "90% skew-adjusted t-interval over 5 cases" in table and "Holm (family-wise error)" in table and "95%" not in table


def test_raw_and_adjusted_verdicts_both_shown_where_they_differ():
    # Five segments; one has a small but consistent effect whose raw p-value (about 0.02) is
    # below 0.05 but not after Holm over 5 segments.
    rng = np.random.default_rng(0)
    per_case = rng.normal(0, 1, (8, 5))
    per_case[:, 0] = [-0.2, -0.5, -0.1, -0.6, 0.1, -0.3, -0.4, -0.05]
    from promptlens.attribution import _pooled
    from promptlens.types import Segment

    segs = [Segment(i, i + 1, "x", "sentence") for i in range(5)]
    out = _pooled(per_case, segs, list(range(5)), confidence=CONF, interval="skew-t", correction="holm", seed=0)
    assert out[0].raw_verdict == "harmful" and out[0].verdict == "unclear"
    assert out[0].p_value < ALPHA <= out[0].p_adjusted


REAL = Path(__file__).resolve().parents[1] / "benchmarks" / "results" / "real_effects.csv"


@pytest.mark.parametrize("n", [8, 16, 32])
def test_interval_on_the_embedded_models_own_effect_shapes(n):
    """Per-case ablation effects the embedded model produced on the shipped recipes (36 segments x
    32 cases, benchmarks/lint_false_calls.py), each segment centred on its own mean and resampled:
    realistic shapes with a known mean of 0. Averaged over the segments, coverage is at least
    nominal and false harmful calls at most 1 - confidence from n = 8 on (at n = 4: 0.94)."""
    import pandas as pd

    df = pd.read_csv(REAL)
    rng = np.random.default_rng(0)
    covered, harmful = [], []
    for _, g in df.groupby("segment"):
        x = g["effect"].to_numpy()
        if x.std() < 1e-9:
            continue
        iv = stats.intervals(rng.choice(x - x.mean(), (n, 2000)), confidence=CONF)
        covered.append(((iv.low <= 0) & (0 <= iv.high)).mean())
        harmful.append((iv.high < 0).mean())
    assert len(covered) >= 30
    assert np.mean(covered) >= CONF and np.mean(harmful) <= ALPHA, (np.mean(covered), np.mean(harmful))
