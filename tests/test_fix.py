"""promptlens fix: the repair loop (fast tier: fake backend + Jaccard similarity, exact numbers;
real tier: the embedded SmolLM2 and MiniLM)."""

from __future__ import annotations

import importlib

import optuna
import pytest

from promptlens.fix import fix
from promptlens.segments import template_fields
from promptlens.similarity import JaccardSimilarity
from promptlens.types import Case

from .fakes import BANANA_PENALTY, FakeBackend

TEMPLATE = ("You are a careful assistant. Read the question below and answer it with a single word. "
            "Eat a banana. Question: {input}\nAnswer:")
CASES = [Case(vars={"input": f"question number {i}?"}, target=t)
         for i, t in enumerate(["yes", "no", "maybe so", "yes", "no", "blue sky", "red", "green"])]


def run(cases=CASES, **kw):
    args = dict(backend=FakeBackend(), similarity=JaccardSimilarity(), budget_trials=12, rounds=1, seed=0,
                n_train=4)
    args.update(kw)
    return fix(TEMPLATE, cases, **args)


def test_planted_harmful_segment_is_edited_and_gain_is_exact():
    result = run()
    assert "banana" not in result.best
    assert result.train_after.objective == pytest.approx(result.train_before.objective + BANANA_PENALTY)
    assert result.validation_after.objective == pytest.approx(result.validation_before.objective + BANANA_PENALTY)
    (edit,) = [e for e in result.edits if "banana" in e.old]
    assert edit.gain == pytest.approx(BANANA_PENALTY)
    assert template_fields(result.best) == ["input"]
    # attribution saw the banana sentence as the most harmful one
    worst = result.attribution_before.ranked()[0]
    assert "banana" in worst.segment.text and worst.mean == pytest.approx(-BANANA_PENALTY)


def test_never_worse_on_train_when_nothing_helps():
    # No banana: every edit is neutral or (for the good word) harmful; the original must come back.
    template = "Answer the question with one word only please. Question: {input}\nAnswer:"
    result = fix(template, CASES, backend=FakeBackend(good_word="answer"), similarity=JaccardSimilarity(),
                 budget_trials=10, rounds=2, n_train=4, seed=1)
    assert result.train_after.objective >= result.train_before.objective
    assert "answer" in result.best.lower()


@pytest.mark.parametrize("threshold", [0.8, 0.9])
def test_no_kept_edit_below_the_threshold(threshold):
    result = run(threshold=threshold, strategy="all")
    assert result.similarity >= threshold
    assert all(e.similarity >= threshold for e in result.edits)
    assert JaccardSimilarity().cosine(TEMPLATE, result.best) >= threshold


def test_a_threshold_that_forbids_the_fix_keeps_the_original():
    result = run(threshold=0.99)
    assert result.best == TEMPLATE and result.edits == ()
    assert result.train_after == result.train_before


def test_only_edits_that_pay_are_kept():
    # strategy "all" edits every sentence; only the banana edit changes the score, the rest ride along.
    result = run(strategy="all", budget_trials=20)
    assert result.edits and all(e.gain > 0 for e in result.edits)
    assert [e.gain for e in result.edits] == [pytest.approx(BANANA_PENALTY)]


class HedgeBackend:
    """Choice cases whose input names the right label, e.g. "q1 (yes)". Every label costs 1 nat;
    when the prompt says "hedge", the right label loses 2 nats more and every wrong one 3 more:
    the margin rises by exactly 1 nat while the right label's own log-prob falls by 2."""

    name = "hedge"

    def token_logprobs(self, prompts, targets):
        out = []
        for prompt, labels in zip(prompts, targets):
            right = prompt.rsplit("(", 1)[1].split(")")[0]
            hedge = "hedge" in prompt
            out.append([[-1.0 - (2.0 if l == right else 3.0) * hedge] for l in labels])
        return out

    def generate(self, prompt: str, max_new_tokens: int = 32) -> str:
        return prompt.strip().splitlines()[-1]


@pytest.mark.parametrize("keep_logprob", [True, False])
def test_margin_search_keeps_the_right_labels_logprob(keep_logprob):
    template = "Classify the text. Be brief and clear. Text: {input}\nAnswer:"
    cases = [Case({"input": f"q{i} ({t})"}, t, ("yes", "no")) for i, t in enumerate(["yes", "no"] * 4)]
    result = fix(template, cases, backend=HedgeBackend(), similarity=JaccardSimilarity(), budget_trials=4,
                 rounds=1, n_train=4, threshold=0.5, kinds=["alternative"], keep_logprob=keep_logprob,
                 alternatives={"Be brief and clear.": ["Be brief and clear, hedge."]})
    assert result.objective == "margin"
    if keep_logprob:  # the wider margin costs the right label 2 nats: infeasible, the original stays
        assert result.best == template and result.infeasible >= 1
        assert result.train_after.logprob == result.train_before.logprob
        assert any("log-prob" in n for n in result.notes)
    else:
        assert "hedge" in result.best
        assert result.train_after.margin == pytest.approx(result.train_before.margin + 1)
        assert result.train_after.logprob == pytest.approx(result.train_before.logprob - 2)


def test_a_spent_time_budget_returns_the_original_with_a_note():
    result = run(budget_seconds=1e-9)
    assert result.best == TEMPLATE and result.trials == 0
    assert any("time budget" in n for n in result.notes)


def test_same_seed_same_result():
    a, b = run(strategy="random", seed=3), run(strategy="random", seed=3)
    assert (a.best, a.edits, a.trials) == (b.best, b.edits, b.trials)


@pytest.mark.parametrize("strategy", ["attribution", "random", "all"])
def test_strategies_respect_the_trial_budget(strategy):
    result = run(strategy=strategy, budget_trials=5, rounds=2)
    assert result.trials <= 5 and result.trials_total <= 5
    assert result.train_after.objective >= result.train_before.objective


def test_resume_continues_the_sqlite_study_without_repeating_trials(tmp_path):
    storage = f"sqlite:///{tmp_path / 'fix.db'}"
    first = run(storage=storage, study_name="s", budget_trials=4, strategy="all")
    name = "s:round0"
    before = {t.number: t.datetime_start for t in optuna.load_study(study_name=name, storage=storage).trials}
    assert len(before) == first.trials == 4
    second = run(storage=storage, study_name="s", budget_trials=9, strategy="all", resume=True)
    study = optuna.load_study(study_name=name, storage=storage)
    assert second.trials == 5 and second.trials_total == 9
    assert [t.number for t in study.trials] == list(range(9))
    assert {t.number: t.datetime_start for t in study.trials[:4]} == before
    # The all-original trial was enqueued once, by the first run.
    zeros = [t for t in study.trials if all(v == 0 for v in t.params.values())]
    assert zeros[0].number == 0
    # Without resume the study is replaced.
    third = run(storage=storage, study_name="s", budget_trials=3, strategy="all")
    assert len(optuna.load_study(study_name=name, storage=storage).trials) == third.trials == 3


def test_resume_under_another_segmentation_starts_the_round_afresh(tmp_path):
    """The stored slots name segments by index; under another segmentation they would point at
    other segments (or past the end: an IndexError before). Resuming then starts afresh, and says so."""
    from promptlens.templates import as_flat

    from .rule_backend import RuleBackend

    flat = as_flat([{"role": "system", "content": "Answer with one word. Be brief."},
                    {"role": "user", "content": "Q: x"}, {"role": "assistant", "content": "Yes."},
                    {"role": "user", "content": "Hurry up now. Q: {input}"}])
    kw = dict(backend=RuleBackend(rules={"hurry": -3.0}), similarity=JaccardSimilarity(), rounds=1, seed=0, n_train=4,
              threshold=0.3, kinds=["delete"], top_k=1, storage=f"sqlite:///{tmp_path / 'fix.db'}", study_name="s")
    first = fix(flat, CASES, budget_trials=1, segmentation="sentence", **kw)
    again = fix(flat, CASES, budget_trials=3, segmentation="unit", resume=True, **kw)
    assert first.trials == 1 and again.trials == again.trials_total == 3
    assert "round 1: the stored study started from another template or segmentation; started afresh" in again.notes
    same = fix(flat, CASES, budget_trials=5, segmentation="unit", resume=True, **kw)
    assert same.trials == 2 and same.trials_total == 5  # the same segmentation resumes


def test_out_folder_gets_the_default_sqlite_storage(tmp_path):
    result = run(out=tmp_path, budget_trials=2)
    assert result.storage == f"sqlite:///{tmp_path / 'promptlens-fix.db'}"
    assert (tmp_path / "promptlens-fix.db").is_file()


# --- rewrites ---------------------------------------------------------------------------------


def test_bad_inputs_name_the_fix():
    from promptlens.errors import InputError

    with pytest.raises(InputError, match="strategy"):
        run(strategy="greedy")
    with pytest.raises(InputError, match="threshold"):
        run(threshold=1.5)


# --- recipes and the command line ---------------------------------------------------------------


def test_cli_fix_writes_the_fixed_template_and_json(tmp_path, monkeypatch, capsys):
    import json

    import promptlens.backends.hf as hf
    fix_module = importlib.import_module("promptlens.fix")  # the package exports a function of that name
    from promptlens.cli import main

    monkeypatch.setattr(hf, "load_backend", lambda *a, **k: FakeBackend())
    monkeypatch.setattr(fix_module, "Similarity", JaccardSimilarity)
    cases = tmp_path / "cases.jsonl"
    cases.write_text("".join(json.dumps({"input": c.vars["input"], "target": c.target}) + "\n" for c in CASES))
    recipe = tmp_path / "r.yaml"
    recipe.write_text(f"template: {json.dumps(TEMPLATE)}\ncases: cases.jsonl\nn_train: 4\nbudget: {{trials: 8}}\n")
    out = tmp_path / "out"
    assert main(["fix", str(recipe), "--out", str(out), "--json", str(tmp_path / "r.json"), "--strategy", "all"]) == 0
    fixed = (out / "fixed-template.txt").read_text()
    assert "banana" not in fixed and "{input}" in fixed
    printed = capsys.readouterr().out
    assert "- Eat a banana." in printed and "validation (4 cases)" in printed
    data = json.loads((tmp_path / "r.json").read_text())
    assert data["best"] == fixed and data["train_after"]["objective"] > data["train_before"]["objective"]
    assert (out / "promptlens-fix.db").is_file()
    # a flag the recipe cannot satisfy is one line and exit code 2
    assert main(["fix", str(recipe), "--out", str(out), "--threshold", "3"]) == 2


# --- real tier: the embedded SmolLM2 and MiniLM -----------------------------------------------------


@pytest.mark.model
def test_real_small_budget_fix_raises_the_logprob_or_keeps_the_original_and_keeps_meaning(backend):
    import dataclasses

    from promptlens.cases import dataset_path, load_cases
    from promptlens.similarity import Similarity

    cases = [dataclasses.replace(c, vars={"input": c.vars["input"]})
             for c in load_cases(dataset_path(), task="sports_understanding")[:10]]
    template = ("Determine whether the following statement is plausible or implausible. "
                "Think about the weather in the city where the game is played.\nStatement: {input}\nAnswer:")
    similarity = Similarity()
    # Sampled paraphrases are the slow step; they have their own test below.
    result = fix(template, cases, backend=backend, similarity=similarity, budget_trials=8, n_train=6, top_k=2,
                 rounds=1, threshold=0.8, seed=0, kinds=("delete", "synonym", "scaffold"))
    assert result.objective == "margin"
    # Margin objective with the log-prob rule: a kept repair raises the right label's log-prob on
    # train (significantly); the margin may move by a non-significant amount either way.
    assert result.best == template or result.train_after.logprob > result.train_before.logprob
    assert result.similarity >= 0.8 and all(e.similarity >= 0.8 for e in result.edits)
    assert similarity.cosine(template, result.best) >= 0.8
    assert template_fields(result.best) == ["input"]
    assert result.trials <= 8


class ListBackend:
    """Choice cases whose input names the right label, e.g. "q1 (yes)". Every label costs 2 nats;
    "one of" in the prompt (the label list) makes every label 1 nat more likely, so the margin
    stays and the right label's log-prob rises by exactly 1 on every case; "lucky" raises the
    margin on case q1 only (by 4 nats): a mean gain that is one case's luck."""

    name = "list"

    def token_logprobs(self, prompts, targets):
        out = []
        for prompt, labels in zip(prompts, targets):
            right = prompt.rsplit("(", 1)[1].split(")")[0]
            first = prompt.rsplit("(", 1)[0].endswith("q1 ")
            rows = []
            for label in labels:
                lp = -2.0 + ("one of" in prompt)
                if "lucky" in prompt and first and label != right:
                    lp -= 4.0
                rows.append([lp])
            out.append(rows)
        return out

    def generate(self, prompt: str, max_new_tokens: int = 32) -> str:
        return prompt.strip().splitlines()[-1]


def test_margin_search_keeps_only_a_significant_logprob_rise():
    # "lucky" lifts the mean margin by 0.5 (4 nats on one case of 8): the search's best on train,
    # but not significant and no log-prob gain, so it is not kept; the label list raises the right
    # label's log-prob by 1 nat on every case, margin unchanged: kept.
    template = "Classify the text. Be brief. Text: {input}\nAnswer:"
    cases = [Case({"input": f"q{i} ({t})"}, t, ("yes", "no")) for i, t in enumerate(["yes", "no"] * 8)]
    result = fix(template, cases, backend=ListBackend(), similarity=JaccardSimilarity(), budget_trials=8,
                 rounds=1, n_train=8, threshold=0.3, edit_floor=0.2, kinds=["alternative"], strategy="all",
                 alternatives={"Be brief.": ["Be brief, lucky."], "Classify the text.": ["Classify the text as one of yes, no."]})
    assert "one of" in result.best and "lucky" not in result.best
    assert result.train_after.logprob == pytest.approx(result.train_before.logprob + 1)
    assert result.validation_after.logprob == pytest.approx(result.validation_before.logprob + 1)
    (edit,) = result.edits
    assert edit.logprob_gain == pytest.approx(1) and edit.gain == pytest.approx(0)


class SharpBackend(ListBackend):
    """As ListBackend, plus "sharply": the right label 0.5 nats more likely, the others 0.5 less
    (the margin +1 on every case, the right label's log-prob +0.5)."""

    def token_logprobs(self, prompts, targets):
        out = super().token_logprobs(prompts, targets)
        for prompt, labels, rows in zip(prompts, targets, out):
            if "sharply" in prompt:
                right = prompt.rsplit("(", 1)[1].split(")")[0]
                for label, row in zip(labels, rows):
                    row[0] += 0.5 if label == right else -0.5
        return out


def test_margin_search_ranks_feasible_templates_by_the_margin():
    # Both rewrites of the first sentence raise the right label's log-prob significantly; the
    # label list by more (+1 against +0.5), "sharply" widens the margin (+1 against 0): on a
    # choice task the margin decides, the log-prob rise is the condition.
    template = "Classify the text. Be brief. Text: {input}\nAnswer:"
    cases = [Case({"input": f"q{i} ({t})"}, t, ("yes", "no")) for i, t in enumerate(["yes", "no"] * 8)]
    result = fix(template, cases, backend=SharpBackend(), similarity=JaccardSimilarity(), budget_trials=8,
                 rounds=1, n_train=8, threshold=0.3, edit_floor=0.2, kinds=["alternative"], strategy="all",
                 alternatives={"Classify the text.": ["Classify the text as one of yes, no.",
                                                      "Classify the text sharply."]})
    assert "sharply" in result.best and "one of" not in result.best
    assert result.train_after.margin == pytest.approx(result.train_before.margin + 1)
    assert result.train_after.logprob == pytest.approx(result.train_before.logprob + 0.5)


def test_a_gain_on_one_case_only_is_not_kept():
    # Log-prob objective: "lucky" gains 4 nats on one of 8 train cases (mean 0.5 > min_gain) and
    # nothing on the rest: the t lower bound is below 0, so the original stays.
    class OneCase(ListBackend):
        def token_logprobs(self, prompts, targets):
            return [[[-2.0 + (4.0 if "lucky" in p and p.rsplit("(", 1)[0].endswith("q1 ") else 0.0)] for _ in ts]
                    for p, ts in zip(prompts, targets)]

    template = "Write the answer. Be brief. Text: {input}\nAnswer:"
    cases = [Case({"input": f"q{i} (x)"}, "x") for i in range(16)]
    result = fix(template, cases, backend=OneCase(), similarity=JaccardSimilarity(), budget_trials=4, rounds=1,
                 n_train=8, threshold=0.3, kinds=["alternative"], strategy="all",
                 alternatives={"Be brief.": ["Be brief, lucky."]})
    assert result.best == template and result.edits == ()
    assert any("not significant" in n for n in result.notes)  # the best trial held it; it was undone


def test_lower_bound_sees_one_lucky_case():
    from promptlens.stats import lower_bound, significant

    assert lower_bound([1.0] * 5) == 1.0 and significant([1.0] * 5)
    lucky = [4.0] + [0.0] * 7
    assert lower_bound(lucky) < 0.0 and not significant(lucky)
    noisy = [0.3, -0.1, 0.5, 0.2, 0.4, 0.1, 0.3, 0.2]
    assert lower_bound(noisy) > 0 and significant(noisy)
    assert not significant(noisy, min_gain=1.0)
    # Below stats.MIN_CASES (4) nothing is significant, however consistent the gains.
    assert lower_bound([1.0] * 3) == float("-inf") and not significant([1.0] * 3)


def test_every_single_edit_is_tried_first(tmp_path):
    storage = f"sqlite:///{tmp_path / 'fix.db'}"
    result = run(storage=storage, study_name="s", budget_trials=12, strategy="all")
    trials = optuna.load_study(study_name="s:round0", storage=storage).trials
    assert not any(trials[0].params.values())  # trial 0: the original
    singles = [t.params for t in trials[1:] if t.system_attrs.get("fixed_params")]
    assert singles and all(sum(1 for c in p.values() if c) == 1 for p in singles)
    assert len({tuple(sorted(p.items())) for p in singles}) == len(singles) and result.trials == 12


# --- no silent regressions: flips and max_regressions ---------------------------------------------

REG_TEMPLATE = "Reply now. Question: {input}\nAnswer:"
# Right answer scores: -1 per word, +1 from the input's own hint word ("y" hints yes, "n" hints no).
# The alternative "Reply banana now." adds +3 to "yes" everywhere: three yes-cases gain 3 nats of
# margin and log-prob, the no-case turns from right (margin +1) to wrong (margin -2).
REG_BONUS = {("y", "yes"): 1.0, ("n", "no"): 1.0, ("banana", "yes"): 3.0}


def _reg_cases(prefix: str, hints: str = "yyyn") -> list[Case]:
    return [Case({"input": f"q{i} {h}"}, "yes" if h == "y" else "no", ("yes", "no"), id=f"{prefix}{i}")
            for i, h in enumerate(hints)]


def _reg_fix(**kw):
    from .rule_backend import RuleBackend

    # 8 train cases: on 4, log-prob gains of (3, 3, 3, 0) are too few and too skewed to be significant.
    return fix(REG_TEMPLATE, _reg_cases("t", "yyynyyyn"), validation=_reg_cases("v"), backend=RuleBackend(bonus=REG_BONUS),
               similarity=JaccardSimilarity(), budget_trials=6, rounds=1, seed=0, threshold=0.3, top_k=1,
               kinds=["alternative"], alternatives={"Reply now.": ["Reply banana now."]}, **kw)


def test_flips_list_the_cases_turned_wrong_and_right_on_train_and_validation():
    result = _reg_fix()
    assert "banana" in result.best  # the margin rises on average: +1.5 nats
    assert result.train_after.margin == pytest.approx(result.train_before.margin + 1.5)
    assert result.train_flips.rule == "correct" and result.train_flips.lost == ("t3: q3 n", "t7: q7 n")
    assert result.validation_flips.lost == ("v3: q3 n",) and result.validation_flips.gained == ()
    assert "1 case(s) turned wrong, 0 right" in result.headline


def test_max_regressions_makes_a_combination_that_turns_a_case_wrong_infeasible():
    result = _reg_fix(max_regressions=0)
    assert result.best == REG_TEMPLATE and result.infeasible >= 1
    assert result.train_flips.lost == () and result.validation_flips.lost == ()
    assert _reg_fix(max_regressions=2).best != REG_TEMPLATE  # two lost cases are within a limit of 2


def test_max_regressions_out_of_range_is_an_input_error():
    from promptlens.errors import InputError

    with pytest.raises(InputError, match="max-regressions"):
        run(max_regressions=-1)


def test_tpe_strategy_searches_every_segment_without_queued_single_edits():
    result = run(strategy="tpe", budget_trials=16)
    assert result.strategy == "tpe" and "banana" not in result.best
    assert result.train_after.objective == pytest.approx(result.train_before.objective + BANANA_PENALTY)


def test_fix_on_a_message_template_deletes_the_harmful_example_and_writes_messages(tmp_path):
    import json

    from promptlens.cli.fix import fixed_file_name, written
    from promptlens.template_files import load_template
    from promptlens.templates import as_flat, messages_of

    from .rule_backend import RuleBackend

    flat = as_flat([{"role": "system", "content": "Answer with one word. Be brief."},
                    {"role": "user", "content": "Q: x"}, {"role": "assistant", "content": "banana"},
                    {"role": "user", "content": "Q: {input}"}])
    result = fix(flat, CASES, backend=RuleBackend(rules={"banana": -2.0}), similarity=JaccardSimilarity(),
                 budget_trials=6, rounds=1, seed=0, n_train=4, threshold=0.3, segmentation="unit", kinds=["delete"])
    assert "banana" not in result.best and [m.role for m in messages_of(result.best)] == ["system", "user"]
    assert "found the harmful segment \u2018[user] Q: x[assistant] banana\u2019" in result.headline
    (tmp_path / "p.json").write_text(json.dumps([{"role": m.role, "content": m.content} for m in messages_of(flat)]),
                                     encoding="utf-8")
    source = load_template(tmp_path / "p.json")
    assert fixed_file_name(source) == "fixed-template.json"
    assert json.loads(written(source, result.best))[-1] == {"role": "user", "content": "Q: {input}"}


def test_a_budget_of_prompts_scored_stops_the_search_and_counts_fixs_own_attribution():
    free = run(strategy="all", budget_trials=20)
    given = run(strategy="all", budget_trials=20, attribution=free.attribution_before)
    # the attribution fix makes itself is counted: leave-one-out over the segments, on each train case
    assert free.prompts_scored - given.prompts_scored == (len(free.attribution_before.features) + 1) * 4
    capped = run(strategy="all", budget_trials=20, prompts=50)
    assert capped.trials < free.trials == 20
    assert capped.prompts_scored <= 50 < free.prompts_scored  # a hard limit: the checks after the search included
    assert free.validation_prompts == capped.validation_prompts == 2 * 4  # the 4 validation cases, before and after


class CountingBackend(FakeBackend):
    """FakeBackend counting every prompt it scores, whatever fix's own counter says."""

    def __init__(self, **kw) -> None:
        super().__init__(**kw)
        self.prompts = 0

    def token_logprobs(self, prompts, targets):
        self.prompts += len(prompts)
        return super().token_logprobs(prompts, targets)


# Seven sentences, a banana in two of them: TPE's best trials delete several at once, so checking
# them one edit at a time (leave-one-out) costs more than a small budget has left after the search.
MANY = ("You are a careful assistant. Eat a banana. Read the question below. Answer it with a single word. "
        "Think first. A banana is yellow. Be brief. Question: {input}\nAnswer:")


@pytest.mark.parametrize("strategy", ["attribution", "random", "all", "tpe"])
@pytest.mark.parametrize("prompts", [45, 57, 80, 120, 200])
def test_every_strategy_scores_no_more_prompts_than_the_budget(strategy, prompts):
    backend = CountingBackend()
    result = fix(MANY, CASES, backend=backend, similarity=JaccardSimilarity(), budget_trials=40, rounds=1, seed=1,
                 n_train=4, top_k=3, threshold=0.3, strategy=strategy, prompts=prompts, segmentation="sentence")
    assert result.prompts_scored <= prompts
    assert backend.prompts == result.prompts_scored + result.validation_prompts  # nothing scored is left uncounted
    assert result.validation_prompts == 2 * 4
    # whatever was kept passed its check: every kept edit's leave-one-out gain on train is measured, not assumed
    assert result.train_after.objective >= result.train_before.objective
    for edit in result.edits:
        assert edit.n_cases == 4 and edit.gain > 0


def test_a_check_the_rest_of_the_budget_cannot_pay_for_falls_back_to_a_trial_the_scores_can_check():
    args = dict(similarity=JaccardSimilarity(), budget_trials=40, rounds=1, seed=1, n_train=4, threshold=0.3,
                strategy="tpe", segmentation="sentence")
    free = fix(MANY, CASES, backend=CountingBackend(), **args)
    assert free.prompts_scored > 100 and "banana" not in free.best  # unbounded, the search and its check
    tight = fix(MANY, CASES, backend=CountingBackend(), prompts=90, **args)
    assert tight.prompts_scored <= 90
    assert any("could not pay for checking the best trial" in n or "could not pay for checking any" in n
               for n in tight.notes)
    # what it kept is checked: each edit's gain is the exact gain of undoing it alone
    assert tight.train_after.objective >= tight.train_before.objective


def test_a_budget_that_cannot_pay_for_the_original_is_an_input_error():
    from promptlens.errors import InputError

    with pytest.raises(InputError, match="give a larger --prompts budget"):
        run(prompts=1)


def test_a_budget_spent_before_the_first_trial_returns_the_original_with_a_note():
    free = run()
    result = run(prompts=4, attribution=free.attribution_before)  # pays for the original's 4 train scores only
    assert result.best == TEMPLATE and result.trials == 0 and result.prompts_scored == 4
    assert any("budget of 4 prompts scored was spent" in n for n in result.notes)


def test_attribution_on_fewer_train_cases_is_a_cheaper_screen_that_still_finds_the_harmful_segment():
    full, cheap = run(), run(attribution_cases=2)
    assert cheap.attribution_before.n_cases == 2 and full.attribution_before.n_cases == 4
    assert "banana" in cheap.attribution_before.ranked()[0].segment.text and "banana" not in cheap.best
    assert cheap.prompts_scored < full.prompts_scored
    # the search still scores the kept edit on every train case
    assert cheap.train_after.objective == pytest.approx(cheap.train_before.objective + BANANA_PENALTY)


def test_attribution_objective_ranks_by_the_right_labels_logprob_under_the_margin_objective():
    # FakeBackend's banana costs every label 3 nats: the margin does not move, the right label's log-prob does
    cases = [Case(c.vars, "yes" if i % 2 else "no", ("yes", "no")) for i, c in enumerate(CASES)]
    by_margin, by_logprob = (run(cases=cases, attribution_objective=o) for o in (None, "logprob"))
    assert by_margin.objective == by_logprob.objective == "margin"
    banana = [f for f in by_margin.attribution_before.features if "banana" in f.segment.text]
    assert by_margin.attribution_before.objective == "margin" and banana[0].mean == pytest.approx(0.0)
    worst = by_logprob.attribution_before.ranked()[0]
    assert by_logprob.attribution_before.objective == "logprob" and "banana" in worst.segment.text
    assert worst.mean == pytest.approx(-BANANA_PENALTY)


@pytest.mark.parametrize("setting, message", [({"prompts": 0}, "prompts 0 is out of range"),
                                              ({"attribution_cases": 0}, "attribution_cases 0 is out of range"),
                                              ({"attribution_objective": "accuracy"}, "attribution_objective")])
def test_budget_and_screen_out_of_range_name_the_fix(setting, message):
    from promptlens.errors import InputError

    with pytest.raises(InputError, match=message):
        run(**setting)


def test_recipe_budget_of_prompts_and_attribution_cases(tmp_path):
    from promptlens.config import load_recipe

    (tmp_path / "r.yaml").write_text("template: 'Q {input}'\ncases: [{input: a, target: b}]\n"
                                     "budget: {trials: 5, prompts: 120}\nattribution_cases: 4\n", encoding="utf-8")
    config = load_recipe(tmp_path / "r.yaml").config
    assert (config.trials, config.prompts, config.attribution_cases) == (5, 120, 4)


@pytest.mark.model
def test_real_screened_attribution_within_a_prompt_budget_removes_the_planted_example(backend):
    # The suite's largest measured fault (a comma-separated few-shot answer on word sorting, -2.7
    # nats over 32 cases): a 4-case ablation screen ranks its unit first, and fix keeps a deletion
    # that raises the target within the budget of prompts scored, the screen's prompts counted in it.
    # (Which deletion: on these 8 cases removing a sorting rule pays as much, +3.0 nats, and wins.)
    from benchmarks.suite import MANIFEST, load_suite
    from promptlens.similarity import Similarity

    if not MANIFEST.is_file():
        pytest.skip("the suite is not built yet (benchmarks/suite/build.py)")
    suite = load_suite()
    variant = min(suite.variants(), key=lambda v: v.harm.logprob.mean)
    train = suite.prompt(variant.prompt_id).cases("bench")[:8]
    result = fix(variant.flat, train, validation=[], backend=backend, similarity=Similarity(), strategy="attribution",
                 attribution_cases=4, prompts=120, trials=12, rounds=1, top_k=2, seed=0, segmentation="unit",
                 kinds=["delete"], attribute_after=False)
    attr = result.attribution_before
    units = len(attr.features)
    assert attr.n_cases == 4 and attr.forward_passes > 0
    assert variant.fault.text.strip() in attr.ranked()[0].segment.text  # the screen puts the fault first
    assert result.edits and all(e.new == "" for e in result.edits)
    assert (units + 1) * 4 < result.prompts_scored <= 120  # the screen, the trials and the check, all in the budget
    assert result.train_after.logprob > result.train_before.logprob


@pytest.mark.model
def test_real_tpe_over_every_unit_stays_within_the_budget_its_check_included(backend):
    # TPE's trials delete many units at once, so checking its best trial one edit at a time costs
    # several times a trial; the search stops while that check can still be paid.
    from benchmarks.suite import MANIFEST, load_suite
    from promptlens.similarity import Similarity

    if not MANIFEST.is_file():
        pytest.skip("the suite is not built yet (benchmarks/suite/build.py)")
    variant = min(load_suite().variants(), key=lambda v: v.harm.logprob.mean)
    train = load_suite().prompt(variant.prompt_id).cases("bench")[:8]
    counting = _Counting(backend)
    result = fix(variant.flat, train, validation=[], backend=counting, similarity=Similarity(),
                 strategy="tpe", prompts=80, trials=30, rounds=1, seed=0, segmentation="unit", kinds=["delete"],
                 attribute_after=False, attribution_cases=2)
    assert result.prompts_scored == counting.prompts <= 80
    assert result.trials >= 2  # trial 0 (the original, free from the memo) and at least one more
    assert result.train_after.objective >= result.train_before.objective
    for edit in result.edits:  # each kept edit passed its leave-one-out check on all 8 cases
        assert edit.n_cases == 8 and edit.gain_low > 0 or (edit.logprob_gain or 0) > 0


class _Counting:
    """A real backend, counting every prompt it scores."""

    def __init__(self, inner) -> None:
        self.inner, self.prompts = inner, 0

    def __getattr__(self, name):
        return getattr(self.inner, name)

    def token_logprobs(self, prompts, targets):
        self.prompts += len(prompts)
        return self.inner.token_logprobs(prompts, targets)


@pytest.mark.model
def test_real_logprob_screen_under_the_margin_objective_sees_the_planted_example(backend):
    # sports_checker's upper-case example costs the right label 1.1 nats over 32 cases (manifest):
    # a 4-case screen by the right label's log-prob sees it, while the search's objective stays the margin.
    from benchmarks.suite import MANIFEST, load_suite
    from promptlens.similarity import Similarity

    if not MANIFEST.is_file():
        pytest.skip("the suite is not built yet (benchmarks/suite/build.py)")
    variant = next(v for v in load_suite().variants() if v.id == "sports_checker/uppercase_example")
    train = load_suite().prompt(variant.prompt_id).cases("bench")[:8]
    result = fix(variant.flat, train, validation=[], backend=backend, similarity=Similarity(), strategy="attribution",
                 attribution_cases=4, attribution_objective="logprob", prompts=100, trials=4, rounds=1, top_k=1,
                 seed=0, segmentation="unit", kinds=["delete"], attribute_after=False)
    attr = result.attribution_before
    assert result.objective == "margin" and attr.objective == "logprob" and attr.n_cases == 4
    fault = next(f for f in attr.features if variant.fault.text.strip() in f.segment.text)
    assert fault.mean < -0.3 and attr.ranked()[0].mean <= fault.mean


def test_few_shot_examples_are_never_edited_in_part():
    """Sentence segmentation splits an example into its question and answer sentences; however
    harmful ("because" and "Q: zebra" cost 3 nats here), fix leaves both as written and says so (the
    answer is a label, and deleting the question would leave an answer to nothing), and edits
    the rules."""
    from promptlens.templates import as_flat, messages_of

    from .rule_backend import RuleBackend

    flat = as_flat([{"role": "system", "content": "Answer with one word. Eat a banana. Be brief."},
                    {"role": "user", "content": "Q: zebra"}, {"role": "assistant", "content": "Yes, because it is."},
                    {"role": "user", "content": "Q: {input}"}])
    result = fix(flat, CASES, backend=RuleBackend(rules={"because": -3.0, "zebra": -3.0, "banana": -2.0}),
                 similarity=JaccardSimilarity(), budget_trials=8, rounds=1, seed=0, n_train=4, threshold=0.3,
                 segmentation="sentence", kinds=["delete"], top_k=3)
    messages = messages_of(result.best)
    assert [m.content for m in messages[1:]] == ["Q: zebra", "Yes, because it is.", "Q: {input}"]
    assert "banana" not in messages[0].content
    (note,) = [n for n in result.notes if "few-shot examples were left as written" in n]
    assert note.startswith("2 segment(s) in few-shot examples were left as written (1 in answers, which are labels;")
    assert "among the 3 weakest segments: " in note and "'Yes, because it is.' (-3.00 nats)" in note
    assert "'Q: zebra' (-3.00 nats)" in note


def _suite_fix(backend, prompt_id: str, name: str, **kwargs):
    """A suite variant and a short delete-only fix of it on 8 bench cases (skips if the suite is not built)."""
    from benchmarks.suite import MANIFEST, load_suite
    from promptlens.similarity import Similarity

    if not MANIFEST.is_file():
        pytest.skip("the suite is not built yet (benchmarks/suite/build.py)")
    prompt = load_suite().prompt(prompt_id)
    variant = next(v for v in prompt.variants if v.name == name)
    result = fix(variant.flat, prompt.cases("bench")[:8], validation=[], backend=backend, similarity=Similarity(),
                 trials=6, rounds=1, top_k=2, seed=0, kinds=["delete"], attribute_after=False, **kwargs)
    return variant, result


@pytest.mark.model
def test_real_sentence_level_fix_leaves_the_few_shot_examples_as_written(backend):
    # The suite's polarity prompt whose last example answers in a sentence instead of one word: at
    # sentence level that answer is the weakest segment by attribution, yet it is a label, so
    # fix edits other segments (or none), and says why.
    from promptlens.templates import messages_of

    variant, result = _suite_fix(backend, "polarity_judge", "wrong_format_example", segmentation="sentence")
    weakest = result.attribution_before.ranked()[0].segment.text.strip()
    assert weakest == variant.fault.text.strip()  # the label is what attribution blames
    before, after = messages_of(variant.flat), messages_of(result.best)
    assert [m.content for m in after if m.role == "assistant"] == [m.content for m in before if m.role == "assistant"]
    assert [m.content for m in after if m.role == "user"] == [m.content for m in before if m.role == "user"]
    (note,) = [n for n in result.notes if "few-shot examples were left as written" in n]
    assert "among the 2 weakest segments: 'The answer is yes, because the fact says' (" in note


@pytest.mark.model
def test_real_default_segmentation_drops_the_uppercase_example(backend):
    # plural_dictionary's upper-case example ("READERS") costs the target 2.11 nats over 32 cases
    # (manifest). At the default segmentation (unit) the example is one segment, question and
    # answer: attribution ranks it weakest and fix deletes it whole. At sentence level fix edits
    # neither part of an example.
    from promptlens.templates import messages_of

    variant, result = _suite_fix(backend, "plural_dictionary", "uppercase_example")
    attr = result.attribution_before
    assert attr.segmentation == "unit"
    weakest = attr.ranked()[0].segment
    assert weakest.kind == "example" and variant.fault.text in weakest.text
    assert result.improved and variant.fault.text not in result.best
    assert len(messages_of(result.best)) == len(messages_of(variant.flat)) - 2  # the example's two turns
