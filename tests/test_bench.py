"""promptlens bench: PDR is exact on a backend with known answers, the CLI fails cleanly, and a
real-model smoke run (the perturbations themselves: tests/test_perturb.py)."""

from __future__ import annotations

import csv
import json
import math
import re

import pytest

from promptlens.bench import bench
from promptlens.bench_report import bench_csv, bench_markdown, bench_plot, bench_table
from promptlens.errors import InputError
from promptlens.perturb import PLACEMENTS
from promptlens.templates import Message, to_flat
from promptlens.types import Case

from .fakes import JaccardSimilarity
from .rule_backend import RuleBackend
from .test_cli import ROOT, run
from .test_perturb import TEMPLATE, _cases


# --- PDR is exact on a backend with known answers -------------------------------------------


def test_pdr_exact_on_rule_backend():
    """"plausible" wins only while the prompt holds the word "determine" (+2 nats; else a tie, which
    counts as wrong). Clean: accuracy 1, logp +1. A perturbation that breaks "Determine": accuracy 0,
    logp -1, so its PDR is 1 and its drop 2 nats; any other perturbation changes nothing."""
    backend = RuleBackend(bonus={("determine", "plausible"): 2.0})
    cases = _cases(4)
    result = bench({"original": TEMPLATE}, cases, backend=backend, similarity=JaccardSimilarity(), threshold=0.5,
                   levels=("character", "word", "sentence"), budget=4, edits=2, seed=3)
    (p,) = result.prompts
    assert p.clean.accuracy == 1.0 and p.clean.logprob == pytest.approx(1.0)
    assert result.metric == "accuracy" and result.n_cases == 4
    # Attribution finds the one word that matters; guided placement attacks it every time.
    assert p.important[0] == ("Determine", pytest.approx(2.0))
    rows = {(r.level, r.placement): r for r in p.rows}
    guided = rows[("character", "guided")]  # typos of "Determine" never run out
    assert guided.n == 4
    assert guided.perturbed_accuracy == 0.0 and guided.pdr_accuracy == 1.0 and guided.pdr == 1.0
    assert guided.logprob_drop == pytest.approx(2.0)
    assert guided.pdr_probability == pytest.approx(1 - math.exp(-2.0))
    # Elsewhere PDR is the share of perturbed prompts that lost the word ("Determine" has two
    # synonyms only, so guided word swaps widen to other words after two).
    for level in ("character", "word", "sentence"):
        for placement in PLACEMENTS:
            variants = [v for v in p.perturbations if v.level == level and v.placement == placement]
            broken = sum("determine" not in v.text.lower() for v in variants) / len(variants)
            row = rows[(level, placement)]
            assert row.n == len(variants) == 4
            assert row.pdr_accuracy == pytest.approx(broken)
            assert row.logprob_drop == pytest.approx(2.0 * broken)
            assert row.worst_pdr == (1.0 if broken else 0.0)
    assert rows[("word", "guided")].pdr >= 0.5 > rows[("word", "random")].pdr
    assert rows[("sentence", "guided")].pdr == 0.0  # a distractor removes no word
    overall = rows[("overall", "guided")]
    assert overall.n == 12
    assert overall.pdr_accuracy == pytest.approx(sum(rows[(lv, "guided")].pdr for lv in ("character", "word", "sentence")) / 3)
    # Formatting variants keep "Determine": the spread is zero.
    assert len(p.formats) >= 5 and p.format_spread == 0.0
    by_level = {c.level: c for c in result.comparisons()}
    assert by_level["character"].pdr_gain == pytest.approx(1.0 - rows[("character", "random")].pdr)


def test_logprob_only_cases_use_probability_pdr():
    backend = RuleBackend(rules={"determine": 1.0})
    cases = [Case({"input": f"n{i}"}, "cats") for i in range(3)]
    result = bench(["Determine the plural. Think about the word.\nNoun: {input}\nPlural:"], cases, backend=backend,
                   similarity=JaccardSimilarity(), threshold=0.5, levels=("word",), budget=2, edits=1)
    row = next(r for r in result.rows if r.placement == "guided" and r.level == "word")
    assert result.metric == "probability" and row.clean_accuracy is None and row.pdr_accuracy is None
    assert row.clean_logprob == pytest.approx(0.0) and row.logprob_drop == pytest.approx(1.0)
    assert row.pdr == row.pdr_probability == pytest.approx(1 - math.exp(-1.0))


def test_same_seed_same_result_and_renderers(tmp_path):
    kwargs = dict(backend=RuleBackend(bonus={("determine", "plausible"): 2.0}), similarity=JaccardSimilarity(),
                  threshold=0.5, levels=("character", "sentence"), budget=3, seed=7)
    one = bench({"original": TEMPLATE, "other": TEMPLATE.replace("Think", "Reflect")}, _cases(2), **kwargs)
    two = bench({"original": TEMPLATE, "other": TEMPLATE.replace("Think", "Reflect")}, _cases(2), **kwargs)
    assert one.rows == two.rows and [p.perturbations for p in one.prompts] == [p.perturbations for p in two.prompts]
    table = bench_table(one)
    assert "guided vs random placement (equal budget)" in table and "format spread" in table
    rows = list(csv.DictReader(bench_csv(one).splitlines()))
    assert len(rows) == 2 * 3 * 2 and {r["prompt"] for r in rows} == {"original", "other"}
    assert bench_markdown(one).count("\n| ") == len(rows) + 2  # header, rule, rows
    bench_plot(one, tmp_path / "p.png")
    assert (tmp_path / "p.png").read_bytes()[:4] == b"\x89PNG"


def test_a_level_with_nothing_that_passes_the_filter_is_reported_not_faked():
    """RuleBackend "paraphrases" every sentence as "yes": never similar enough, so the semantic
    level has no perturbed prompt; its rows are empty, the note says so, the renderers cope."""
    result = bench({"original": TEMPLATE}, _cases(2), backend=RuleBackend(), similarity=JaccardSimilarity(),
                   threshold=0.5, levels=("semantic", "sentence"), budget=2)
    rows = {(r.level, r.placement): r for r in result.rows}
    assert rows[("semantic", "random")].n == rows[("semantic", "guided")].n == 0
    assert rows[("semantic", "guided")].pdr is None and rows[("sentence", "guided")].n == 2
    assert result.notes == ("original, semantic: 0 of 2 perturbed prompts per placement passed the meaning filter "
                            "(threshold 0.5)",)
    assert [c.level for c in result.comparisons()] == ["sentence", "overall"]
    assert "note: original, semantic: 0 of 2" in bench_table(result) and bench_csv(result).count("\n") == 7


def test_few_shot_examples_are_never_perturbed():
    """The examples' words are no sites: a message template whose free text is all in its examples
    (and fields) has nothing to perturb, and the note says so instead of blaming the meaning filter."""
    flat = to_flat([Message("user", "Statement: the sun is hot"), Message("assistant", "plausible"),
                    Message("user", "{input}")])
    result = bench({"examples": flat}, _cases(2), backend=RuleBackend(), similarity=JaccardSimilarity(),
                   threshold=0.01, levels=("character", "sentence"), budget=2)
    assert all(r.n == 0 for r in result.rows if r.level != "clean")
    assert result.notes == tuple(f"examples, {level}: nothing to perturb (no {kind} outside the fields, the label "
                                 "words and the few-shot examples)"
                                 for level, kind in (("character", "word"), ("sentence", "sentence")))


@pytest.mark.parametrize("kwargs, message", [
    ({"budget": 0}, "budget 0 is out of range"),
    ({"levels": ("typo",)}, "unknown level 'typo'"),
    ({"threshold": 1.5}, "threshold 1.5 is out of range"),
])
def test_bad_arguments_name_the_fix(kwargs, message):
    with pytest.raises(InputError, match=message):
        bench([TEMPLATE], _cases(), backend=RuleBackend(), similarity=JaccardSimilarity(), **kwargs)


def test_prompt_whose_fields_the_cases_do_not_fill():
    with pytest.raises(InputError, match="no value for template field"):
        bench({"a": TEMPLATE, "b": "Say {other}."}, _cases(), backend=RuleBackend(), similarity=JaccardSimilarity())


# --- the command line -------------------------------------------------------------------------


@pytest.mark.parametrize("args, message", [
    (["bench"], "nothing to bench: give a recipe, TEMPLATE --cases FILE, or a promptlens.yaml"),
    (["bench", "nope.yaml"], "nope.yaml: no such recipe file"),
    (["bench", "recipes/navigate.yaml", "--levels", "typo"], "unknown level 'typo'"),
    (["bench", "recipes/navigate.yaml", "--levels", "word", "typo"], "unknown level 'typo'"),
    (["bench", "--levels", "word", "recipes/navigate.yaml"], "put the recipe or template before --levels"),
    (["bench", "recipes/navigate.yaml", "--budget", "0"], "--budget 0 is out of range"),
    (["bench", "recipes/navigate.yaml", "--prompt", "missing.txt"], "missing.txt: no such prompt file"),
    (["bench", "recipes/navigate.yaml", "--task", "navigate"], "--task selects records of a --cases file"),
])
def test_cli_user_errors_exit_2_with_one_line(args, message):
    result = run(*args)
    assert result.returncode == 2, result.stderr
    assert message in result.stderr and "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


@pytest.mark.model
def test_cli_smoke_on_real_model(tmp_path):
    fixed = tmp_path / "fixed-template.txt"
    fixed.write_text("Determine whether the following statement is plausible or implausible.\n"
                     "Statement: {input}\nAnswer:")
    out = tmp_path / "out"
    result = run("bench", str(ROOT / "recipes" / "sports_understanding.yaml"), "--prompt", str(fixed),
                 "--limit", "2", "--budget", "1", "--levels", "character", "--threads", "1",
                 "--out", str(out), "--json", str(tmp_path / "b.json"), "--html", str(tmp_path / "b.html"))
    assert result.returncode == 0, result.stderr[-2000:]
    assert "guided vs random placement" in result.stdout and "fixed-template" in result.stdout
    rows = list(csv.DictReader((out / "bench.csv").read_text().splitlines()))
    assert {r["prompt"] for r in rows} == {"original", "fixed-template"} and len(rows) == 2 * 2 * 2
    assert (out / "bench.png").stat().st_size > 1000 and (out / "bench.md").is_file()
    data = json.loads((tmp_path / "b.json").read_text())
    assert data["n_cases"] == 2 and len(data["prompts"]) == 2
    page = (tmp_path / "b.html").read_text()
    assert page.startswith("<!DOCTYPE html>") and "fixed-template" in page and 'class="chart pdr"' in page


@pytest.mark.model
def test_few_shot_recipe_on_real_model_keeps_its_examples(tmp_path):
    """sports_fewshot.yaml: a system rule, two examples, the user template; every perturbed prompt
    keeps both examples (questions and answers) as written and changes the rest."""
    result = run("bench", str(ROOT / "recipes" / "sports_fewshot.yaml"), "--limit", "2", "--budget", "2",
                 "--levels", "character", "--threads", "1", "--out", str(tmp_path / "out"),
                 "--json", str(tmp_path / "b.json"))
    assert result.returncode == 0, result.stderr[-2000:]
    prompt = json.loads((tmp_path / "b.json").read_text())["prompts"][0]
    contents = lambda text: re.split(r"\[(?:system|user|assistant)\] ", text)[1:]  # noqa: E731 (the shown form)
    original = contents(prompt["template"])
    assert len(original) == 6 and len(prompt["perturbations"]) == 4
    for p in prompt["perturbations"]:
        new = contents(p["text"])
        assert new[1:5] == original[1:5] and (new[0], new[5]) != (original[0], original[5]), p["edits"]
