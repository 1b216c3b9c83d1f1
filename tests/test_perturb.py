"""promptlens.perturb (shared by bench and lint): every perturbation keeps the fields, the label
words and the similarity threshold (property tests); format variants keep every word; sites skip
labels, fields, braces and few-shot examples; guided placement attacks the most important site first."""

from __future__ import annotations

import random
import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from promptlens.perturb import (LEVELS, PLACEMENTS, Site, format_variants, keeps_meaning_markers, label_counts, perturb,
                                protected_words, sentence_sites, word_sites)
from promptlens.segments import template_fields
from promptlens.templates import Message, message_spans, to_flat
from promptlens.types import Case

from .fakes import JaccardSimilarity

TEMPLATE = ("Determine whether the following statement is plausible or implausible. "
            "Think about the weather in the city today.\nStatement: {input}\nAnswer:")

LABELS = ("plausible", "implausible")



def _cases(n: int = 4) -> list[Case]:
    return [Case({"input": f"fact {i}"}, "plausible", LABELS) for i in range(n)]



def _paraphrase(body: str, n: int, seed: int) -> list[str]:
    """A stand-in for the LLM: reorders words, sometimes drops one (the filter must catch a lost label)."""
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        words = body.split()
        if len(words) > 2 and rng.random() < 0.5:
            words.pop(rng.randrange(len(words)))
        else:
            rng.shuffle(words)
        out.append(" ".join(words))
    return out



# --- property tests: every perturbation keeps fields and labels and meets the threshold ------

WORDS = st.sampled_from(["Determine", "whether", "the", "statement", "is", "plausible", "implausible", "Read",
                         "question", "carefully", "answer", "with", "yes", "no", "Think", "about", "city",
                         "game", "following", "Give", "only", "word", "{{", "}}"])
SENTENCE = st.lists(WORDS, min_size=3, max_size=9).map(lambda ws: " ".join(ws) + ".")


@st.composite
def templates(draw) -> str:
    sentences = draw(st.lists(SENTENCE, min_size=1, max_size=3))
    cue = draw(st.sampled_from(["Answer:", "Statement: {input}\nAnswer:", "{input}", "Q: {input} A:"]))
    sep = draw(st.sampled_from([" ", "\n"]))
    return sep.join(sentences) + "\n" + cue


@settings(max_examples=60, deadline=None)
@given(template=templates(), level=st.sampled_from(LEVELS), placement=st.sampled_from(PLACEMENTS),
       threshold=st.sampled_from([0.3, 0.5, 0.8]), seed=st.integers(0, 10_000), labels=st.sampled_from(
           [LABELS, ("yes", "no"), ("True", "False")]))
def test_every_perturbation_keeps_protected_words_and_meets_threshold(template, level, placement, threshold, seed,
                                                                       labels):
    cases = [Case({"input": "x"}, labels[0], labels)]
    protected = protected_words(cases)
    sites = word_sites(template, protected) if level in ("character", "word") else sentence_sites(template)
    sites = [Site(s.start, s.end, s.text, importance=random.Random(i).random()) for i, s in enumerate(sites)]
    sim = JaccardSimilarity()
    found = perturb(template, level, sites=sites, placement=placement, budget=3, rng=random.Random(seed),
                    similarity=sim, threshold=threshold, protected=protected, paraphrase=_paraphrase, max_tries=30)
    assert len(found) <= 3
    assert len({p.text for p in found}) == len(found) and template not in {p.text for p in found}
    for p in found:
        assert template_fields(p.text) == template_fields(template)
        assert label_counts(p.text, protected) == label_counts(template, protected)
        assert p.similarity == pytest.approx(sim.cosine(template, p.text)) and p.similarity >= threshold
        assert p.level == level and p.placement == placement
        if level == "semantic":  # the paraphrase itself is close to the sentence it replaces
            (i,) = p.sites
            new = p.edits[0].split(" -> ", 1)[1][1:-1]
            assert p.sentence_similarity == pytest.approx(sim.cosine(sites[i].text, new))
            assert p.sentence_similarity >= threshold


@settings(max_examples=40, deadline=None)
@given(template=templates(), labels=st.sampled_from([LABELS, ("Answer", "Statement"), ("yes", "no")]))
def test_format_variants_keep_words_fields_and_labels(template, labels):
    protected = protected_words([Case({"input": "x"}, labels[0], labels)])
    variants = format_variants(template, protected)
    assert variants[0] == ("original", template)
    assert len({t for _, t in variants}) == len(variants)
    for _, text in variants:
        assert keeps_meaning_markers(template, text, protected)
        assert sorted(re.findall(r"\w+", text.lower())) == sorted(re.findall(r"\w+", template.lower()))


def test_word_sites_skip_labels_fields_and_braces():
    protected = protected_words(_cases())
    texts = [s.text for s in word_sites("Is it plausible, {{x}} or implausible? Check {input} carefully.", protected)]
    assert texts == ["Is", "it", "or", "Check", "carefully"]


def test_sites_leave_few_shot_examples_as_written():
    """A typo in an example's answer would change the label it demonstrates: the examples (user
    question and assistant answer) hold no site; the system rules and the user template do."""
    flat = to_flat([Message("system", "Give the plural of the word. Answer in one word."),
                    Message("user", "Word: cat"), Message("assistant", "cats"),
                    Message("user", "Word: box"), Message("assistant", "boxes"),
                    Message("user", "Word: {input} please")])
    words = word_sites(flat, frozenset())
    assert [s.text for s in words] == ["Give", "the", "plural", "of", "the", "word", "Answer", "in", "one", "word",
                                       "Word", "please"]
    assert [s.text for s in sentence_sites(flat)] == ["Give the plural of the word.", "Answer in one word."]
    contents = [flat[a:b] for a, b, _ in message_spans(flat)]
    found = perturb(flat, "character", sites=words, placement="random", budget=30, rng=random.Random(0),
                    similarity=JaccardSimilarity(), threshold=0.0, protected=frozenset(), edits=2)
    assert len(found) == 30
    for p in found:
        new = [p.text[a:b] for a, b, _ in message_spans(p.text)]
        assert new[1:5] == contents[1:5] and (new[0], new[5]) != (contents[0], contents[5])


def test_guided_placement_attacks_the_most_important_site_first():
    sites = word_sites(TEMPLATE, protected_words(_cases()))
    ranked = [Site(s.start, s.end, s.text, 5.0 if s.text == "Think" else 0.0) for s in sites]
    found = perturb(TEMPLATE, "character", sites=ranked, placement="guided", budget=4, rng=random.Random(0),
                    similarity=JaccardSimilarity(), threshold=0.5, protected=protected_words(_cases()), edits=1)
    assert len(found) == 4 and all(p.edits[0].startswith("'Think' -> ") for p in found)
