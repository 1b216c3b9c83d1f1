"""Candidate rewrites of one segment, and the filter that keeps only those that say the same thing.

    segment ──► generators (delete, paraphrase, synonym, scaffold, alternative) ──► filter ──► Rewrite

A generator proposes new text for a segment's *body* (the text without surrounding whitespace);
the segment's own leading and trailing whitespace is put back, so a rewrite never joins two lines
or leaves a double space. The filter keeps a candidate only when

* the whole rewritten template is still a valid template with exactly the original's fields;
* the whole rewritten template is at least ``threshold`` similar to the *original* template
  (not to the round's starting point, so repeated rounds cannot drift away step by step);
* the edited segment alone is at least ``edit_floor`` similar to the segment it replaces
  (deletion is exempt: it has no text to compare, the whole-prompt check still applies);
* a generated sentence (paraphrase, synonym swap) is about as fluent as the original: its mean
  per-token log-prob under the model is at most ``fluency_margin`` nats below the original's.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field
from typing import Mapping, Sequence

from .errors import InputError
from .backends.base import can_generate, supports_gradients
from .scoring import Backend
from .segments import join, template_fields
from .similarity import SimilarityModel
from .templates import is_messages
from .types import Case, Rewrite, Segment

from .names import KINDS  # noqa: E402 (defined where the recipe reader can import it cheaply)

PARAPHRASE_PROMPT = "Rewrite this instruction more clearly, keep its meaning:\n{text}"
# What a generated sentence is scored after, to measure its fluency on its own.
FLUENCY_PROMPT = "Write one sentence."

# A small, conservative table: instruction words and their near-synonyms in prompts.
SYNONYMS: Mapping[str, tuple[str, ...]] = {
    "determine": ("decide", "judge"),
    "decide": ("determine",),
    "whether": ("if",),
    "following": ("given",),
    "given": ("following",),
    "answer": ("reply", "respond"),
    "statement": ("sentence", "claim"),
    "statements": ("sentences", "claims"),
    "plausible": ("believable", "realistic"),
    "implausible": ("unbelievable", "unrealistic"),
    "write": ("give",),
    "give": ("write", "provide"),
    "word": ("term",),
    "correct": ("right",),
    "select": ("choose", "pick"),
    "choose": ("select", "pick"),
    "identify": ("find",),
    "output": ("give", "return"),
    "return": ("output", "give"),
    "please": ("kindly",),
    "carefully": ("closely",),
    "sentence": ("statement",),
    "question": ("query",),
    "only": ("just",),
    "short": ("brief",),
    "explain": ("describe",),
}
_WORD = re.compile(r"[A-Za-z]+")
_PREAMBLE = re.compile(
    r"^(?:here(?:'s| is)[^:]*:|(?:the )?(?:rewritten|revised|clearer|new) (?:instruction|version|sentence)[^:]*:|"
    r"sure[,!.][^:]*:?|rewrite:|instruction:)\s*",
    re.IGNORECASE,
)




@dataclass(frozen=True)
class RewriteConfig:
    threshold: float = 0.8  # whole-template similarity to the original
    edit_floor: float = 0.5  # edited segment vs the segment it replaces
    fluency_margin: float = 1.5  # nats per token a generated sentence may lose
    n_paraphrases: int = 3
    max_synonyms: int = 4
    kinds: tuple[str, ...] = ("delete", "paraphrase", "synonym", "scaffold", "alternative", "drop_example",
                              "reorder_examples")
    alternatives: Mapping[str, Sequence[str]] = field(default_factory=dict)
    seed: int = 0


def split_whitespace(text: str) -> tuple[str, str, str]:
    """``text`` as (leading whitespace, body, trailing whitespace). A whole message (a segment of
    ``by="message"``) keeps its role mark in the lead, so a rewrite of its body stays that message."""
    if text[:1] and is_messages(text[:1]) and not is_messages(text[1:]):
        lead, body, tail = split_whitespace(text[1:])
        return text[0] + lead, body, tail
    body = text.strip()
    if not body:
        return text, "", ""
    lead = text[: len(text) - len(text.lstrip())]
    tail = text[len(text.rstrip()) :]
    return lead, body, tail


# --- generators: body text -> new body texts --------------------------------------------------


def synonym_swaps(body: str, limit: int = 4) -> list[str]:
    """One candidate per (word, synonym): the first occurrence replaced, casing kept."""
    out: list[str] = []
    for m in _WORD.finditer(body):
        word = m.group()
        for syn in SYNONYMS.get(word.lower(), ()):
            new = syn.capitalize() if word[0].isupper() else syn
            out.append(body[: m.start()] + new + body[m.end() :])
            if len(out) >= limit:
                return out
    return out


def scaffolds(body: str, cases: Sequence[Case], *, last: bool) -> list[str]:
    """Format variants: the explicit label list (choice cases), an answer cue (last segment only),
    and casing (sentence case; upper case for a short instruction)."""
    out: list[str] = []
    labels = _shared_choices(cases)
    sentence = body if body.endswith((".", "!", "?", ":")) else body + "."
    if labels:
        out.append(f"{sentence} Answer with one of: {', '.join(labels)}.")
    if last:
        out.append(f"{sentence}\nAnswer:")
    if body[0].islower():
        out.append(body[0].upper() + body[1:])
    elif len(body.split()) <= 8 and not body.isupper():
        out.append(body.upper())
    return out


def _shared_choices(cases: Sequence[Case]) -> tuple[str, ...] | None:
    """The label set, when every case has the same one (in any order: a dataset may shuffle its
    labels per case); listed in its most common order."""
    if not cases or not all(c.choices for c in cases) or len({frozenset(c.choices or ()) for c in cases}) != 1:
        return None
    return Counter(c.choices for c in cases).most_common(1)[0][0]


def alternatives_for(body: str, alternatives: Mapping[str, Sequence[str]]) -> list[str]:
    """User-given alternatives: a key equal to the body replaces it, a key inside it is swapped."""
    out: list[str] = []
    for key, alts in alternatives.items():
        key = key.strip()
        if not key:
            continue
        if key == body:
            out.extend(a.strip() for a in alts)
        elif key in body:
            out.extend(body.replace(key, a.strip(), 1) for a in alts)
    return out


def clean_generation(text: str) -> str:
    """First non-empty line of a model's rewrite, without preamble, quotes or list markers."""
    for line in text.splitlines():
        line = _PREAMBLE.sub("", line.strip()).strip()
        line = re.sub(r"^(?:[-*•]|\d+[.)])\s+", "", line).strip().strip("\"'“”`").strip()
        if line:
            return line
    return ""


def paraphrases(backend: Backend, body: str, *, n: int, seed: int) -> list[str]:
    """``n`` sampled rewrites by the backend's own model (seeded), cleaned to one line each.

    A backend without a local model (a fake, a remote API) gives its greedy ``generate``.
    """
    prompt = PARAPHRASE_PROMPT.format(text=body)
    # Not getattr(backend, "model"): a RemoteBackend's ``model`` is the server's model name.
    if not supports_gradients(backend):
        return [clean_generation(backend.generate(prompt))] if can_generate(backend) else []
    model = backend.model
    import torch

    tokenizer = backend.tokenizer
    ids = torch.tensor([backend.encode_prompt(prompt)], device=model.device)
    n_body = len(tokenizer(body, add_special_tokens=False)["input_ids"])
    torch.manual_seed(seed)
    with torch.inference_mode():
        out = model.generate(
            ids, attention_mask=torch.ones_like(ids), do_sample=True, temperature=0.8, top_p=0.95,
            num_return_sequences=n, max_new_tokens=n_body + 12, pad_token_id=tokenizer.eos_token_id,
            stop_strings=["\n"], tokenizer=tokenizer,  # only the first line is kept: stop there
        )
    texts = [clean_generation(t) for t in tokenizer.batch_decode(out[:, ids.shape[1] :], skip_special_tokens=True)]
    # A rewrite cut off by max_new_tokens is half a sentence: keep only those that end like the original.
    ends = body[-1] if body[-1] in ".!?:" else None
    return [t for t in texts if ends is None or t.endswith((".", "!", "?", ":"))]


# --- the filter ------------------------------------------------------------------------------


def fluency(backend: Backend, texts: Sequence[str]) -> list[float]:
    """Mean per-token log-prob (nats) of each text after a neutral prompt: higher is more fluent."""
    if not texts:
        return []
    rows = backend.token_logprobs([FLUENCY_PROMPT] * len(texts), [[t] for t in texts])
    return [sum(r[0]) / max(1, len(r[0])) for r in rows]


def candidates(
    segments: Sequence[Segment],
    index: int,
    *,
    original: str,
    backend: Backend,
    similarity: SimilarityModel,
    cases: Sequence[Case],
    config: RewriteConfig = RewriteConfig(),
    cache: dict[str, list[str]] | None = None,
) -> list[Rewrite]:
    """Filtered rewrites of ``segments[index]``, the unchanged segment first (candidate 0).

    ``original`` is the template the user started from: every candidate's whole template is
    compared with it, so the threshold bounds the drift of the final prompt, not one step.
    ``cache`` maps a segment body to its paraphrases: sampling is the slow step, and a later
    round often edits a sentence an earlier round already paraphrased.
    """
    seg = segments[index]
    if seg.kind == "examples":  # a block of few-shot examples: drop one, or reorder them
        from .fewshot import block_candidates

        return block_candidates(segments, index, original=original, similarity=similarity,
                                threshold=config.threshold, kinds=config.kinds)
    lead, body, tail = split_whitespace(seg.text)
    keep = Rewrite(index, seg.text, "original", similarity.cosine(original, join(segments)), 1.0)
    if not body:
        return [keep]
    fields = template_fields(original)
    # An answer cue goes after the last instruction, unless that already is a cue ("Answer:").
    last = index == max(i for i, s in enumerate(segments) if s.feature) and not body.endswith(":")
    seed = config.seed * 100_003 + index
    proposals: list[tuple[str, str]] = []  # (kind, body)
    for kind in config.kinds:
        if is_messages(body) and kind != "delete":  # whole messages (a few-shot example): delete only
            continue
        if kind in ("drop_example", "reorder_examples"):  # edits of an examples block (above)
            continue
        if kind == "delete":
            proposals.append((kind, ""))
        elif kind == "paraphrase":
            if cache is None or body not in cache:
                sampled = paraphrases(backend, body, n=config.n_paraphrases, seed=seed)
                cache = {} if cache is None else cache
                cache[body] = sampled
            proposals += [(kind, t) for t in cache[body]]
        elif kind == "synonym":
            proposals += [(kind, t) for t in synonym_swaps(body, config.max_synonyms)]
        elif kind == "scaffold":
            proposals += [(kind, t) for t in scaffolds(body, cases, last=last)]
        elif kind == "alternative":
            proposals += [(kind, t) for t in alternatives_for(body, config.alternatives)]
        else:
            raise InputError(f"unknown rewrite kind {kind!r}; choose from: {', '.join(KINDS[1:])}")
    # One candidate per distinct text; drop the ones that break the template.
    seen = {seg.text}
    texts: list[tuple[str, str, str]] = []  # (kind, new body, new segment text)
    for kind, new in proposals:
        new = new.strip()
        text = "" if kind == "delete" else lead + new + tail
        if (kind != "delete" and not new) or text in seen or not _same_fields(segments, index, text, fields):
            continue
        seen.add(text)
        texts.append((kind, new, text))
    templates = [join(segments, {index: t}) for _, _, t in texts]
    whole = similarity.cosines(original, templates)
    part = similarity.cosines(body, [new for _, new, _ in texts])
    generated = [i for i, (kind, _, _) in enumerate(texts) if kind in ("paraphrase", "synonym")]
    fluent = dict(zip(generated, fluency(backend, [texts[i][1] for i in generated])))
    floor = fluency(backend, [body])[0] - config.fluency_margin if generated else 0.0
    out = [keep]
    for i, (kind, _, text) in enumerate(texts):
        if whole[i] < config.threshold:
            continue
        if kind != "delete" and part[i] < config.edit_floor:
            continue
        if i in fluent and fluent[i] < floor:
            continue
        out.append(Rewrite(index, text, kind, whole[i], None if kind == "delete" else part[i]))
    return out


def _same_fields(segments: Sequence[Segment], index: int, text: str, fields: list[str]) -> bool:
    """The template with ``text`` in place of segment ``index`` parses and keeps every field."""
    try:
        return template_fields(join(segments, {index: text})) == fields
    except InputError:
        return False
