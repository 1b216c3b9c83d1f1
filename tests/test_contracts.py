"""Contracts run over every implementation: each similarity model, each rewrite kind that needs
no model (the paraphrase and few-shot kinds run in tests/test_fix.py and tests/test_templates.py)."""

from __future__ import annotations

import pytest

from promptlens.rewrites import RewriteConfig, candidates
from promptlens.segments import join, segment, template_fields
from promptlens.similarity import JaccardSimilarity, Similarity
from promptlens.types import Case

from .fakes import FakeBackend

TEXTS = ["Answer with yes or no.", "Reply yes or no.", "Eat a banana.", "The capital of France is Paris."]


@pytest.fixture(scope="module", params=["jaccard", pytest.param("minilm", marks=pytest.mark.model)])
def similarity(request):
    return JaccardSimilarity() if request.param == "jaccard" else Similarity()


def test_similarity_contract(similarity):
    for a in TEXTS:
        assert similarity.cosine(a, a) == pytest.approx(1.0, abs=1e-5)
        for b in TEXTS:
            assert -1.0 - 1e-6 <= similarity.cosine(a, b) <= 1.0 + 1e-6
            assert similarity.cosine(a, b) == pytest.approx(similarity.cosine(b, a), abs=1e-5)
        assert similarity.cosines(a, TEXTS) == pytest.approx([similarity.cosine(a, b) for b in TEXTS], abs=1e-5)
    assert similarity.cosines(TEXTS[0], []) == []


TEMPLATE = "You judge statements.\nEat a banana.\nSay yes or no.\nStatement: {input}\n"
CASES = [Case(vars={"input": f"statement {i}"}, target="yes", choices=("yes", "no")) for i in range(3)]
MODEL_FREE_KINDS = ("delete", "synonym", "scaffold", "alternative")


@pytest.mark.parametrize("kind", MODEL_FREE_KINDS)
def test_rewrite_kind_contract(kind):
    segs = segment(TEMPLATE, "line")
    config = RewriteConfig(threshold=0.3, edit_floor=0.0, kinds=(kind,),
                           alternatives={"Say yes or no.": ["Answer with yes or no."]})
    similarity = JaccardSimilarity()
    found_any = False
    for i, seg in enumerate(segs):
        if not seg.feature or seg.kind == "field":
            continue
        out = candidates(segs, i, original=TEMPLATE, backend=FakeBackend(), similarity=similarity, cases=CASES,
                         config=config)
        assert out[0].kind == "original" and out[0].text == seg.text  # candidate 0 keeps the segment
        texts = [c.text for c in out]
        assert len(texts) == len(set(texts))  # no candidate twice
        for c in out[1:]:
            found_any = True
            assert c.kind == kind and c.segment_index == i
            new = join(segs, {i: c.text})
            assert template_fields(new) == template_fields(TEMPLATE)  # fields survive every edit
            assert c.similarity == pytest.approx(similarity.cosine(TEMPLATE, new))
            assert c.similarity >= config.threshold
    assert found_any, f"no {kind} candidate for any segment of the test template"
