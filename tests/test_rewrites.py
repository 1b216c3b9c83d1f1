"""promptlens.rewrites: the candidate edits of one segment (delete, paraphrase, synonym, scaffold,
alternative), which keep the fields and the segment's whitespace and meet the similarity
threshold; fake backend and Jaccard similarity, and the real model's paraphrases."""

from __future__ import annotations

import pytest

from promptlens.rewrites import RewriteConfig, candidates, clean_generation, split_whitespace, synonym_swaps
from promptlens.segments import segment
from promptlens.similarity import JaccardSimilarity
from promptlens.types import Case

from .fakes import FakeBackend
from .test_fix import CASES, TEMPLATE


def test_candidates_keep_fields_whitespace_and_the_original_first():
    segs = segment(TEMPLATE)
    index = next(i for i, s in enumerate(segs) if "banana" in s.text)
    cands = candidates(segs, index, original=TEMPLATE, backend=FakeBackend(), similarity=JaccardSimilarity(),
                       cases=CASES, config=RewriteConfig(threshold=0.5))
    assert cands[0].kind == "original" and cands[0].text == segs[index].text
    kinds = {c.kind for c in cands}
    assert {"delete", "paraphrase"} <= kinds
    for c in cands[1:]:
        assert c.similarity >= 0.5
        assert c.text == "" or c.text.endswith(" ")  # the segment's trailing space is kept
    assert "Eat a fruit. " in [c.text for c in cands]


def test_candidates_reject_rewrites_that_drop_a_field_or_add_braces():
    template = "Say it. {input}"
    segs = segment(template)
    cfg = RewriteConfig(threshold=0.0, edit_floor=0.0, alternatives={"Say it.": ["Say {it}.", "Say {{it}}.", "Tell."]})
    cands = candidates(segs, 0, original=template, backend=FakeBackend(), similarity=JaccardSimilarity(),
                       cases=[Case({"input": "x"}, "y")], config=cfg)
    texts = [c.text for c in cands]
    assert "Say {it}. " not in texts
    assert "Say {{it}}. " in texts and "Tell. " in texts


def test_scaffolds_for_choice_cases():
    template = "Is it plausible? {input}"
    cases = [Case({"input": "x"}, "yes", ("yes", "no"))]
    segs = segment(template)
    cands = candidates(segs, 0, original=template, backend=FakeBackend(), similarity=JaccardSimilarity(),
                       cases=cases, config=RewriteConfig(threshold=0.0, edit_floor=0.0, kinds=("scaffold",)))
    assert "Is it plausible? Answer with one of: yes, no. " in [c.text for c in cands]
    # The same labels in another order per case (entailed_polarity): still one label set.
    mixed = [Case({"input": "x"}, "yes", ("no", "yes")), Case({"input": "y"}, "no", ("yes", "no")),
             Case({"input": "z"}, "no", ("no", "yes"))]
    cands = candidates(segs, 0, original=template, backend=FakeBackend(), similarity=JaccardSimilarity(),
                       cases=mixed, config=RewriteConfig(threshold=0.0, edit_floor=0.0, kinds=("scaffold",)))
    assert "Is it plausible? Answer with one of: no, yes. " in [c.text for c in cands]


def test_synonyms_and_cleaning():
    assert "Decide whether it is true." in synonym_swaps("Determine whether it is true.")
    assert clean_generation('Here is the rewritten instruction:\n"Say hello."\nMore') == "Say hello."
    assert clean_generation("1. Do this now.") == "Do this now."
    assert split_whitespace("  a b \n") == ("  ", "a b", " \n")


@pytest.mark.model
def test_real_paraphrases_are_seeded_single_lines(backend):
    from promptlens.rewrites import paraphrases

    first = paraphrases(backend, "Answer with yes or no.", n=2, seed=0)
    assert first == paraphrases(backend, "Answer with yes or no.", n=2, seed=0)
    assert all(p and "\n" not in p and p.endswith((".", "!", "?", ":")) for p in first)

