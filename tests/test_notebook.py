"""Notebooks and data: ``_repr_html_`` shows the same self-contained page as the reports, and
``to_dataframe()`` gives attributions (per segment, per case x segment), fix trials, bench rows and
lint findings as pandas frames with the numbers the rule fakes are built to give."""

from __future__ import annotations

import html
import re

import pytest

from promptlens.attribution import attribute
from promptlens.bench import bench
from promptlens.errors import InputError
from promptlens.fix import fix
from promptlens.html import attribution_html, bench_html, fix_html, lint_html

from .fakes import FakeBackend, JaccardSimilarity
from .rule_backend import RuleBackend
from .test_bench import TEMPLATE as BENCH_TEMPLATE, _cases
from .test_fix import CASES, TEMPLATE
from .test_html import ATTR_CASES, PROMPT, check_page, linted  # noqa: F401 (a fixture)

pd = pytest.importorskip("pandas")


@pytest.fixture(scope="module")
def attribution():
    return attribute(PROMPT, cases=ATTR_CASES, backend=RuleBackend(rules={"banana": -3.0}), segmentation="line")


@pytest.fixture(scope="module")
def benched():
    return bench({"original": BENCH_TEMPLATE}, _cases(4), backend=RuleBackend(bonus={("determine", "plausible"): 2.0}),
                 similarity=JaccardSimilarity(), threshold=0.5, levels=("character", "word"), budget=2, seed=3)


def shown_page(obj) -> str:
    """The page inside the notebook iframe."""
    out = obj._repr_html_()
    assert out.startswith("<iframe srcdoc=\"") and 'sandbox="allow-scripts"' in out
    return html.unescape(re.search(r'srcdoc="([^"]*)"', out).group(1))


def test_attribution_frames(attribution):
    frame = attribution.to_dataframe()
    assert list(frame["text"]) == [f.segment.text for f in attribution.features]
    banana = frame[frame["text"].str.contains("banana")].iloc[0]
    assert banana["mean"] == pytest.approx(-3.0) and banana["ci_high"] == pytest.approx(-3.0) and banana["harmful"]
    per_case = attribution.to_dataframe(per_case=True)
    assert len(per_case) == attribution.n_cases * len(attribution.features)
    assert list(per_case.columns) == ["case", "segment", "text", "kind", "start", "end", "effect"]
    by_case = per_case[per_case["text"].str.contains("banana")]
    assert list(by_case["case"]) == list(range(attribution.n_cases))
    assert by_case["effect"].tolist() == pytest.approx([-3.0] * attribution.n_cases)
    # per segment, the mean over cases is the pooled mean
    means = per_case.groupby("segment")["effect"].mean()
    assert means.tolist() == pytest.approx(frame["mean"].tolist())


def test_fix_trials_frame(tmp_path):
    result = fix(TEMPLATE, CASES, backend=FakeBackend(), similarity=JaccardSimilarity(), budget_trials=8, rounds=1,
                 seed=0, n_train=4, out=tmp_path)
    frame = result.to_dataframe()
    assert len(frame) == result.trials_total and list(frame.columns[:2]) == ["round", "number"]
    assert set(frame["round"]) == {0}
    complete = frame[frame["state"] == "COMPLETE"]
    assert complete["value"].max() == pytest.approx(result.train_after.objective)
    assert shown_page(result) == fix_html(result)
    memory = fix(TEMPLATE, CASES, backend=FakeBackend(), similarity=JaccardSimilarity(), budget_trials=4, rounds=1,
                 seed=0, n_train=4)
    with pytest.raises(InputError, match="kept in memory"):
        memory.to_dataframe()


def test_bench_frame_and_page(benched):
    frame = benched.to_dataframe()
    assert len(frame) == len(benched.rows)
    assert frame["pdr"].tolist() == [r.pdr for r in benched.rows]
    guided = frame[(frame["level"] == "character") & (frame["placement"] == "guided")].iloc[0]
    assert guided["pdr"] == 1.0 and guided["logprob_drop"] == pytest.approx(2.0)  # "Determine" attacked every time
    page = bench_html(benched)
    check_page(page)
    overall = next(r for r in benched.rows if r.level == "overall" and r.placement == "guided")
    assert f"original (guided placement): PDR {overall.pdr:.1%} over all levels" in page
    assert 'class="chart pdr"' in page and "Guided vs random placement" in page
    assert shown_page(benched) == page


def test_attribution_and_lint_pages(attribution, linted):  # noqa: F811 (the fixture)
    assert shown_page(attribution) == attribution_html(attribution)
    result, _ = linted
    assert shown_page(result) == lint_html(result)
    frame = result.to_dataframe()
    assert len(frame) == sum(len(t.findings) for t in result.templates) and "rule_id" in frame.columns
