"""promptlens.study: memoised template scoring, the right/flip rule, slots and templates, trial 0
and the queued single edits, feasibility (similarity, repeated sentences) and which trial is the
result. Fake backend and Jaccard similarity, real in-memory Optuna studies."""

from __future__ import annotations

import math
import time

import optuna
import pytest

from promptlens.handoff import SharedScores
from promptlens.segments import segment
from promptlens.similarity import JaccardSimilarity
from promptlens.storage import open_study, storage_for
from promptlens.study import (Slot, TemplateScorer, best_template, enqueue_original, enqueue_single_edits, flip,
                              repeats, right, run_study, store_slots, stored_slots, template_for)
from promptlens.types import Case, Rewrite, Score

from .fakes import BANANA_PENALTY, FakeBackend

optuna.logging.set_verbosity(optuna.logging.WARNING)

TEMPLATE = "Answer briefly. Eat a banana. Question: {input}\nAnswer:"
CASES = [Case({"input": f"q{i}?"}, t) for i, t in enumerate(["yes", "no", "blue sky", "red"])]


def _slots() -> tuple[list, list[Slot]]:
    segs = segment(TEMPLATE)
    banana = next(i for i, s in enumerate(segs) if "banana" in s.text)
    brief = next(i for i, s in enumerate(segs) if "briefly" in s.text)
    return segs, [Slot(brief, (Rewrite(brief, segs[brief].text, "original", 1.0), Rewrite(brief, "", "delete", 0.7))),
                  Slot(banana, (Rewrite(banana, segs[banana].text, "original", 1.0), Rewrite(banana, "", "delete", 0.8),
                                Rewrite(banana, "Eat a fruit. ", "paraphrase", 0.9)))]


def test_a_sentence_said_twice_is_infeasible():
    assert repeats("Say yes. Answer with one of: a, b. Be brief. Answer with one of: a, b.") > 0
    assert repeats("Say yes. Be brief.\nAnswer:") == 0


def test_flip_rule_for_free_form_targets_is_every_token_above_one_half():
    def s(*tokens: float) -> Score:
        return Score(sum(tokens), tokens)

    sure, unsure = s(-0.1, -0.5), s(-0.1, -math.log(2) - 0.01)
    assert [flip(sure, unsure), flip(unsure, sure), flip(sure, s(-0.6)), flip(unsure, s(-3.0, -3.0))] == [-1, 1, 0, 0]


def test_right_on_a_choice_case_is_the_label_scoring_best():
    assert right(Score(-5.0, (-5.0,), correct=True)) and not right(Score(-0.1, (-0.1,), correct=False))


def test_workers_scorers_share_train_scores_through_the_study(tmp_path):
    """Under ``fix --join``: a template another worker scored costs no forward pass, whether it
    scored every case or only the pruner's minibatch (then only the rest is scored here)."""
    storage = storage_for(f"journal:{tmp_path / 'study.log'}")
    study_a = optuna.create_study(study_name="s", storage=storage)
    study_b = optuna.load_study(study_name="s", storage=storage)  # the other worker's handle
    a, b = FakeBackend(), FakeBackend()
    mine = TemplateScorer(a, CASES, "logprob", shared=SharedScores(study_a))
    theirs = TemplateScorer(b, CASES, "logprob", shared=SharedScores(study_b))
    full = mine.mean(TEMPLATE)
    assert theirs.mean(TEMPLATE) == full and b.forward_passes == 0 and theirs.shared.taken == len(CASES)
    assert theirs.memo[(TEMPLATE, 2)] == mine.memo[(TEMPLATE, 2)]  # the Score itself, not only the mean
    other = TEMPLATE.replace("briefly", "shortly")
    mine.mean(other, 2)  # the minibatch only
    assert theirs.mean(other) == pytest.approx(TemplateScorer(FakeBackend(), CASES, "logprob").mean(other))
    assert b.forward_passes == 1 and b.prompts_scored == [other.replace("{input}", c.vars["input"]) for c in CASES[2:]]
    assert SharedScores(study_a).get(other).keys() == set(range(len(CASES)))  # the rest written back for others
    assert mine.mean(other) == theirs.mean(other) and a.forward_passes == 2  # worker a took cases 2-3 back


def test_the_scorer_memoises_per_template_and_case():
    backend = FakeBackend()
    scorer = TemplateScorer(backend, CASES, "logprob")
    words = [len(c.target.split()) for c in CASES]
    assert scorer.mean(TEMPLATE, 2) == pytest.approx(-(sum(words[:2]) + 2 * BANANA_PENALTY) / 2)
    calls = backend.forward_passes
    assert scorer.mean(TEMPLATE) == pytest.approx(-(sum(words) + 4 * BANANA_PENALTY) / 4)
    assert backend.forward_passes == calls + 1 and len(backend.prompts_scored) == 4  # only the 2 missing cases
    clean = TEMPLATE.replace("Eat a banana. ", "")
    assert scorer.gains(clean, TEMPLATE) == pytest.approx([BANANA_PENALTY] * 4)
    scorer.mean(TEMPLATE)
    scorer.gains(clean, TEMPLATE)
    assert len(backend.prompts_scored) == 8  # nothing scored twice
    assert scorer.regressions(clean, TEMPLATE) == 0


def test_template_for_applies_the_chosen_rewrite_of_each_slot():
    segs, slots = _slots()
    assert template_for(segs, slots, (0, 0)) == TEMPLATE
    assert template_for(segs, slots, (1, 2)) == "Eat a fruit. Question: {input}\nAnswer:"


def test_trial_0_is_the_original_and_is_not_enqueued_twice():
    segs, slots = _slots()
    study = open_study(None, "s", seed=0, resume=False)
    enqueue_original(study, slots)
    enqueue_original(study, slots)  # still waiting: not queued again
    assert enqueue_single_edits(study, slots, limit=10) == 3
    waiting = [t.system_attrs["fixed_params"] for t in study.get_trials(states=(optuna.trial.TrialState.WAITING,))]
    # trial 0 unchanged; then the first candidate of every slot, then the second
    a, b = (s.param for s in slots)
    assert waiting == [{a: 0, b: 0}, {a: 1, b: 0}, {a: 0, b: 1}, {a: 0, b: 2}]
    trial = study.ask()
    assert trial.number == 0
    assert (trial.suggest_categorical(a, [0, 1]), trial.suggest_categorical(b, [0, 1, 2])) == (0, 0)


def _run(slots, segs, budget: int, threshold: float = 0.0, **kw):
    study = open_study(None, "s", seed=0, resume=False)
    enqueue_original(study, slots)
    enqueue_single_edits(study, slots, limit=10)
    scorer = TemplateScorer(FakeBackend(), CASES, "logprob")
    outcome = run_study(study, segs, slots, scorer=scorer, similarity=JaccardSimilarity(), original=TEMPLATE,
                        threshold=threshold, budget=budget, deadline=time.monotonic() + 60, minibatch=2, **kw)
    return study, outcome


def test_run_study_keeps_to_the_budget_and_finds_the_planted_edit():
    segs, slots = _slots()
    study, outcome = _run(slots, segs, budget=5)
    assert outcome.trials_run == outcome.trials_total == 5 == len(study.trials)
    assert study.trials[0].user_attrs["template"] == TEMPLATE  # trial 0 scored the original
    assert "banana" not in outcome.best_template and outcome.best_choice[1] in (1, 2)
    assert best_template(study) == (outcome.best_template, outcome.best_value)


def test_a_combination_under_the_similarity_threshold_is_infeasible_and_unscored():
    segs, slots = _slots()
    study, outcome = _run(slots, segs, budget=5, threshold=0.99)
    assert outcome.best_template == TEMPLATE and outcome.best_choice == (0, 0)  # only the original is feasible
    edited = [t for t in study.trials if t.user_attrs["template"] != TEMPLATE]
    assert len(edited) >= 3 and outcome.infeasible == len(edited)  # the 3 queued single edits at least
    assert all(t.user_attrs.get("infeasible") and t.value is None for t in edited)


def test_best_template_prefers_the_earliest_among_equals():
    study = open_study(None, "s", seed=0, resume=False)
    for text in ("first", "second"):
        trial = study.ask()
        trial.set_user_attr("template", text)
        study.tell(trial, 1.0)
    assert best_template(study) == ("first", 1.0)
    assert best_template(open_study(None, "empty", seed=0, resume=False)) is None


def test_slots_are_stored_for_the_same_start_template_only():
    _, slots = _slots()
    study = open_study(None, "s", seed=0, resume=False)
    store_slots(study, TEMPLATE, slots)
    assert stored_slots(study, TEMPLATE) == slots
    assert stored_slots(study, TEMPLATE + " ") is None


def test_slots_are_stored_for_the_same_segments_only():
    """A slot's segment index means the same segment only under the same segmentation: a study set
    up by sentence gives no slots to a run that cuts the template by line (it would edit another one)."""
    segs, slots = _slots()
    study = open_study(None, "s", seed=0, resume=False)
    store_slots(study, TEMPLATE, slots, segs)
    assert stored_slots(study, TEMPLATE, segs) == slots == stored_slots(study, TEMPLATE)
    lines = segment(TEMPLATE, "line")
    assert lines != segs and stored_slots(study, TEMPLATE, lines) is None


def test_a_trial_another_worker_finished_first_is_not_counted_twice(tmp_path):
    # SQLite has no row locks: two workers can pop the same enqueued trial. The one that tells
    # second finds the trial finished; that is a lost race, not an error, and it is not counted.
    from promptlens.study import _one_trial

    study = optuna.create_study(storage=storage_for(f"sqlite:///{tmp_path / 'race.db'}"), study_name="race",
                                direction="maximize")
    study.enqueue_trial({"x": 1})
    told: list = []

    def objective(trial: optuna.Trial) -> float:
        trial.suggest_int("x", 0, 3)
        study.tell(trial, 1.0)  # the other worker, which popped the same trial, finishes it first
        return 2.0

    assert _one_trial(study, objective, budget=5, on_trial=lambda s, t: told.append(t)) is False
    assert told == [] and [t.value for t in study.trials] == [1.0]
    assert _one_trial(study, lambda t: float(t.suggest_int("x", 0, 3)), budget=5, on_trial=None) is True

