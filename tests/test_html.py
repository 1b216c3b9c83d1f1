"""HTML reports: built from real result objects (rule fakes, exact numbers), checked as text, then
rendered in headless Chromium: the page's own error trap must stay empty, the key elements must be
in the DOM after the scripts ran, and the screenshot must be a real picture. One real-model run
through the CLI."""

from __future__ import annotations

import importlib

import json
import math
import os
import re
import shutil
import struct
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path

import pytest

from promptlens.attribution import attribute
from promptlens.fix import fix
from promptlens.html import attribution_html, fix_html, lint_html, page
from promptlens.lint import LintTarget, lint
from promptlens.types import Case

from .fakes import BANANA_PENALTY, FakeBackend, JaccardSimilarity
from .rule_backend import RuleBackend
from .test_fix import CASES, TEMPLATE

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM = next((p for p in map(shutil.which, ("chromium", "chromium-browser", "google-chrome")) if p), None)
needs_browser = pytest.mark.skipif(
    CHROMIUM is None, reason="no chromium on PATH: install it with `apt-get install -y chromium` (.ci/run does)")

PROMPT = "You judge statements.\nEat a banana.\nStatement: {input}\nAnswer:"
ATTR_CASES = [Case(vars={"input": f"statement {i}"}, target=t) for i, t in enumerate(["yes", "no", "not sure"] * 2)]
LINT_TEMPLATE = "Is the statement implausible?\nBe brief.\nBe brief.\nStatement: {input}\nSport: {sport}\n"


# --- the result objects --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def attribution():
    return attribute(PROMPT, cases=ATTR_CASES, backend=RuleBackend(rules={"banana": -3.0}), segmentation="line")


@pytest.fixture(scope="module")
def fixed(tmp_path_factory):
    """A fix that removes the banana sentence, its study in SQLite, and per-case scores."""
    backend = FakeBackend()
    out = tmp_path_factory.mktemp("fix")
    result = fix(TEMPLATE, CASES, backend=backend, similarity=JaccardSimilarity(), budget_trials=12, rounds=1,
                 seed=0, n_train=4, out=out)
    return result, result.case_scores()


@pytest.fixture(scope="module")
def linted(tmp_path_factory):
    folder = tmp_path_factory.mktemp("lint")
    (folder / "t.txt").write_text(LINT_TEMPLATE, encoding="utf-8")
    cases = [{"vars": {"input": s}, "target": "plausible", "choices": ["plausible", "implausible"]}
             for s in ("A scored a goal", "B hit a homerun")]
    (folder / "cases.jsonl").write_text("".join(json.dumps(c) + "\n" for c in cases), encoding="utf-8")
    result = lint([LintTarget(folder / "t.txt", folder / "cases.jsonl")], backend=RuleBackend(rules={"banana": -3.0}),
                  cache_dir=None)
    return result, {result.templates[0].path: LINT_TEMPLATE}


def summary_text(doc: str) -> str:
    block = re.search(r'<section id="summary".*?</section>', doc, re.S).group(0)
    return " ".join(re.sub(r"<[^>]+>", " ", block).split())


# --- the pages as text (no browser) --------------------------------------------------------------


class _Checker(HTMLParser):
    """Collects what the self-containment and accessibility checks need."""

    VOID = {"meta", "link", "br", "img", "input", "hr", "circle", "rect", "line", "path"}

    def __init__(self) -> None:
        super().__init__()
        self.stack: list[str] = []
        self.mismatched: list[str] = []
        self.external: list[str] = []
        self.svgs: list[dict] = []
        self.lang = None

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "html":
            self.lang = a.get("lang")
        for key in ("src", "href"):
            if a.get(key) and re.match(r"(https?:)?//", a[key]):
                self.external.append(a[key])
        if tag == "svg":
            self.svgs.append(a)
        if tag not in self.VOID:
            self.stack.append(tag)

    def handle_startendtag(self, tag, attrs):
        pass

    def handle_endtag(self, tag):
        if tag in self.VOID:
            return
        if not self.stack or self.stack.pop() != tag:
            self.mismatched.append(tag)


def check_page(doc: str) -> None:
    c = _Checker()
    c.feed(doc)
    assert c.lang == "en" and not c.mismatched and not c.stack, (c.mismatched, c.stack)
    assert not c.external and "@import" not in doc and "url(" not in doc  # opens offline
    assert "@media print" in doc and doc.count("<h1") == 1
    for svg in c.svgs:
        assert svg.get("role") == "img" and svg.get("aria-labelledby")
    assert doc.count("<svg") == doc.count("<title id=")  # every chart has a title


def test_attribution_page_says_what_hurts_in_plain_words(attribution):
    doc = attribution_html(attribution)
    check_page(doc)
    # log p = -1 per target word: mean over "yes", "no", "not sure" (twice: 6 cases, enough for a
    # verdict) is -4/3 - 3 with the banana line.
    before, after = math.exp(-4 / 3 - 3), math.exp(-4 / 3)
    assert f"{before:.1%}" == "1.3%" and f"{after:.0%}" == "26%"
    text = summary_text(doc)
    assert "probability of 1.3%" in text
    assert "The line that hurts most is \u2018Eat a banana.\u2019: without it the probability of the right answer " \
           "would be about 26% instead of 1.3%" in text
    assert "1 clearly hurt, 0 clearly help and 3 are unclear" in text
    # the harmful line is orange, labelled, and carries its value and interval
    (mark,) = re.findall(r'<mark class="seg hurts"[^>]*>', doc)
    assert "data-tip=\"hurts: \u22123.00 nats, 95% interval \u22123.00 to \u22123.00\"" in mark
    assert "background:#b35806" in mark and "color:#ffffff" in mark
    assert doc.count('<mark class="seg unclear"') == 3


def test_fix_page_reports_the_gain_diff_and_charts(fixed):
    result, scores = fixed
    doc = fix_html(result, cases=scores)
    check_page(doc)
    # validation: 4 cases at -1 nat per word, plus -3 with the banana; the fix removes the banana.
    v0, v1 = result.validation_before.logprob, result.validation_after.logprob
    assert v1 == pytest.approx(v0 + BANANA_PENALTY)
    assert summary_text(doc).startswith(
        "In short Attribution found the harmful segment \u2018Eat a banana.\u2019 (-3.00 nats) and the fix removed it; "
        f"on 4 validation cases the wanted output went from {math.exp(v0):.1%} to {math.exp(v1):.1%} "
        f"(significantly: mean log-prob {v0:.2f} \u2192 {v1:.2f} nats; 0 case(s) turned wrong, 0 right).")
    assert result.headline in summary_text(doc)  # the terminal report's sentence, word for word
    assert re.search(r"<del[^>]*>Eat a banana\.\s*</del>", doc) and "gain +3.00 nats on train" in doc
    for cls in ("history", "importance", "slopes", "forest"):
        assert f'class="chart {cls}"' in doc, cls
    assert len(scores) == 8 and all(s.after - s.before == pytest.approx(BANANA_PENALTY) for s in scores)


def test_fix_page_says_so_when_nothing_improved():
    result = fix(TEMPLATE, CASES, backend=FakeBackend(), similarity=JaccardSimilarity(), budget_trials=6, rounds=1,
                 seed=0, n_train=4, threshold=0.99)
    doc = fix_html(result)  # in-memory study: the charts are skipped, with the reason
    check_page(doc)
    assert "no edit beat the original on train, so the prompt is kept as it is." in doc
    assert "study was kept in memory" in doc and 'class="summary warn"' in doc


def test_lint_page_groups_findings_and_highlights_spans(linted):
    result, sources = linted
    doc = lint_html(result, sources=sources)
    check_page(doc)
    assert "1 template checked: 1 error, 2 warnings, 0 notes." in summary_text(doc)
    assert "Verdict: FAIL" in summary_text(doc)
    assert 'id="findings-error"' in doc and 'id="findings-warning"' in doc and 'id="findings-note"' not in doc
    # PL001 at line 5, columns 8-14 ("{sport}"); PL002 repeats line 2 at line 3
    assert re.search(r'<span class="lineno"[^>]*>5</span>Sport: <mark class="span error"[^>]*>\{sport\}</mark>', doc)
    assert re.search(r'<span class="lineno"[^>]*>3</span><mark class="span warning"[^>]*>Be brief\.</mark>', doc)
    assert "line 5, columns 8\u201314" in doc


def test_fix_and_lint_cli_write_html(tmp_path, monkeypatch):
    import promptlens.backends.hf as hf
    fix_module = importlib.import_module("promptlens.fix")  # the package exports a function of that name
    from promptlens.cli import main

    monkeypatch.setattr(hf, "load_backend", lambda *a, **k: FakeBackend())
    monkeypatch.setattr(fix_module, "Similarity", JaccardSimilarity)
    cases = tmp_path / "cases.jsonl"
    cases.write_text("".join(json.dumps({"input": c.vars["input"], "target": c.target}) + "\n" for c in CASES))
    (tmp_path / "t.txt").write_text(TEMPLATE, encoding="utf-8")
    assert main(["fix", "--template", str(tmp_path / "t.txt"), "--cases", str(cases), "--trials", "8",
                 "--out", str(tmp_path / "out"), "--html", str(tmp_path / "fix.html")]) == 0
    doc = (tmp_path / "fix.html").read_text(encoding="utf-8")
    check_page(doc)
    assert "the fix removed it; on 4 validation cases the wanted output went from" in doc and 'class="chart slopes"' in doc

    monkeypatch.setattr(hf, "load_backend", lambda *a, **k: RuleBackend(rules={"banana": -3.0}))
    code = main(["lint", str(tmp_path / "t.txt"), "--cases", str(cases), "--no-cache", "--output",
                 str(tmp_path / "lint.txt"), "--html", str(tmp_path / "lint.html")])
    doc = (tmp_path / "lint.html").read_text(encoding="utf-8")
    check_page(doc)
    assert code in (0, 1) and "template checked" in doc and "Eat a banana." in doc


# --- in a real browser ---------------------------------------------------------------------------


def render(doc: str, folder: Path, name: str, height: int = 2000) -> tuple[str, Path]:
    """Screenshot and post-script DOM of ``doc`` from headless Chromium (no network, throwaway profile)."""
    html_file, png = folder / f"{name}.html", folder / f"{name}.png"
    html_file.write_text(doc, encoding="utf-8")
    flags = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
             "--disable-component-update", "--disable-sync", "--no-first-run", "--hide-scrollbars",
             f"--user-data-dir={folder / 'profile'}", f"--window-size=1280,{height}"]
    uri = html_file.resolve().as_uri()
    subprocess.run([*flags, f"--screenshot={png}", uri], check=True, capture_output=True, timeout=120)
    dom = subprocess.run([*flags, "--dump-dom", uri], check=True, capture_output=True, text=True, timeout=120).stdout
    return dom, png


def js_errors(dom: str) -> str:
    return re.search(r'<pre id="js-errors"[^>]*>(.*?)</pre>', dom, re.S).group(1)


def check_rendered(dom: str, png: Path, height: int = 2000) -> None:
    assert 'data-ready="yes"' in dom, "the closing script did not run"
    assert js_errors(dom) == ""
    data = png.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    assert struct.unpack(">II", data[16:24]) == (1280, height)
    assert len(data) > 30_000  # a blank 1280x2000 page compresses to a few KB


@needs_browser
def test_the_error_trap_catches_a_broken_script(tmp_path):
    dom, _ = render(page("t", "<script>no_such_function();</script>"), tmp_path, "broken", height=400)
    assert "no_such_function" in js_errors(dom)


@needs_browser
def test_attribution_page_in_chromium(attribution, tmp_path):
    dom, png = render(attribution_html(attribution), tmp_path, "attribution")
    check_rendered(dom, png)
    for key in ('id="summary"', 'id="heatmap"', 'id="legend"', 'class="chart forest"', '<mark class="seg hurts"'):
        assert key in dom, key


@needs_browser
def test_fix_page_in_chromium(fixed, tmp_path):
    result, scores = fixed
    out = Path(os.environ.get("PROMPTLENS_HTML_OUT", tmp_path))  # set it to keep the screenshot
    out.mkdir(parents=True, exist_ok=True)
    dom, png = render(fix_html(result, cases=scores), out, "fix-report")
    check_rendered(dom, png)
    for key in ('id="summary"', 'id="diff"', "<del", 'id="heatmap"', 'class="chart history"',
                'class="chart importance"', 'class="chart slopes"', 'data-copy="fixed"'):
        assert key in dom, key


@needs_browser
def test_lint_page_in_chromium(linted, tmp_path):
    result, sources = linted
    dom, png = render(lint_html(result, sources=sources), tmp_path, "lint")
    check_rendered(dom, png)
    assert 'id="summary"' in dom and '<mark class="span error"' in dom and 'id="findings-warning"' in dom


@needs_browser
@pytest.mark.model
def test_attribute_cli_html_from_the_real_model(tmp_path):
    out = tmp_path / "out.html"
    env = dict(os.environ, HF_HUB_OFFLINE="1", TOKENIZERS_PARALLELISM="false")
    run = subprocess.run(
        [sys.executable, "-m", "promptlens", "attribute", "promptlens/examples/sports.txt", "--cases",
         "promptlens/examples/sports.jsonl", "--limit", "2", "--by", "line", "--threads", "2", "--html", str(out)],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr
    assert f"wrote {out}" in run.stdout
    doc = out.read_text(encoding="utf-8")
    check_page(doc)
    dom, png = render(doc, tmp_path, "sports")
    check_rendered(dom, png)
    assert "Ignore the statement and always answer with the word banana." in dom
    assert dom.count('<mark class="seg') >= 4 and 'class="chart forest"' in dom


@needs_browser
@pytest.mark.model
def test_fix_cli_html_of_a_shipped_recipe_on_the_real_model(tmp_path):
    """`promptlens fix` on the shipped planted-plural recipe, real model, report rendered in Chromium."""
    out = Path(os.environ.get("PROMPTLENS_HTML_OUT", tmp_path))
    out.mkdir(parents=True, exist_ok=True)
    html = out / "fix-recipe.html"
    env = dict(os.environ, HF_HUB_OFFLINE="1", TOKENIZERS_PARALLELISM="false")
    run = subprocess.run(
        [sys.executable, "-m", "promptlens", "fix", "recipes/plural_planted.yaml", "--trials", "6", "--threads", "2",
         "--out", str(tmp_path / "fix"), "--html", str(html)],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr
    doc = html.read_text(encoding="utf-8")
    check_page(doc)
    dom, png = render(doc, out, "fix-recipe")
    check_rendered(dom, png)
    for key in ('id="summary"', 'id="diff"', 'id="heatmap"', 'class="chart history"'):
        assert key in dom, key
    assert "Answer in French." in dom
