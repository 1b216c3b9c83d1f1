"""Meaning-preserving perturbations of a prompt template at four levels, for ``promptlens bench``.

    template ──► sites (words, sentences) ──► placement (random | guided) ──► edit ──► meaning filter

* ``character``: typos in ``edits`` words of three or more letters: an adjacent swap, a deleted, inserted or keyboard-neighbour
  letter (DeepWordBug / TextBugger style);
* ``word``: synonym substitutions in ``edits`` words from a fixed table (TextFooler style, without
  its counter-fitted embeddings, which are not available offline);
* ``sentence``: a distractor appended to a sentence, "and true is true" or a random string
  (StressTest / CheckList style);
* ``semantic``: a whole sentence paraphrased by an LLM (the caller passes the paraphraser).

A site is a place an edit can go: the letters of one word, or the body of one sentence of three or
more words. Template fields are never sites, nor is any text of a few-shot example (a user turn
and the assistant turn that answers it, in a message template): a typo in an example's answer
changes the label it demonstrates, and PromptBench, too, attacks the instructions, not the
demonstrations. Placement ``random`` draws sites uniformly;
``guided`` draws them from the sites with the highest ``importance`` (the caller fills it from
attribution), widening the window one site at a time when it runs out of new candidates.

Every kept perturbation passes the meaning filter: the same template fields, the same protected
(label) words, each as often as before, and whole-template similarity to the original at or above
``threshold``. A paraphrase must also be ``threshold`` similar to the sentence it replaces: one
sentence of three can change its meaning entirely and the whole template still pass. Everything is seeded by the ``random.Random`` passed in.
"""

from __future__ import annotations

import random
import re
import string
from dataclasses import dataclass
from typing import Callable, Iterable, Sequence

from .errors import InputError
from .rewrites import SYNONYMS
from .segments import overlaps, segment, template_fields
from .similarity import SimilarityModel
from .templates import MARK_RE
from .types import Case

from .names import LEVELS  # noqa: E402 (defined where the CLI can import it cheaply)
PLACEMENTS = ("random", "guided")

# More near-synonyms for words common in task instructions; rewrites.SYNONYMS is used as well.
MORE_SYNONYMS: dict[str, tuple[str, ...]] = {
    "read": ("study",),
    "think": ("reflect",),
    "about": ("regarding",),
    "city": ("town",),
    "game": ("match",),
    "played": ("held",),
    "instructions": ("directions", "steps"),
    "follow": ("obey",),
    "starting": ("initial",),
    "point": ("spot", "place"),
    "fact": ("premise",),
    "slowly": ("carefully",),
    "form": ("version",),
    "following": ("given", "next"),
    "question": ("query",),
    "text": ("passage",),
}
# StressTest (PromptBench) distractors; CheckList's random strings are drawn by ``distractor``.
DISTRACTORS = ("and true is true", "and false is not true", "and true is true and true is true")
# QWERTY neighbours, for a typo that a hurried typist makes.
_KEYBOARD = {
    "q": "wa", "w": "qes", "e": "wrd", "r": "etf", "t": "ryg", "y": "tuh", "u": "yij", "i": "uok", "o": "ipl",
    "p": "ol", "a": "qsz", "s": "adwx", "d": "sfec", "f": "dgrv", "g": "fhtb", "h": "gjyn", "j": "hkum",
    "k": "jlim", "l": "kop", "z": "asx", "x": "zsdc", "c": "xdfv", "v": "cfgb", "b": "vghn", "n": "bhjm",
    "m": "njk",
}
_LETTERS = re.compile(r"[A-Za-z]+")
_TOKEN = re.compile(r"\w+")


@dataclass(frozen=True)
class Site:
    """A place an edit can go: ``template[start:end]``, and how much it matters (higher: more)."""

    start: int
    end: int
    text: str
    importance: float = 0.0


@dataclass(frozen=True)
class Perturbation:
    """One perturbed template and what was changed in it."""

    level: str
    placement: str
    text: str  # the whole perturbed template
    edits: tuple[str, ...]  # e.g. "'Determine' -> 'Detremine'"
    sites: tuple[int, ...]  # indices into the level's site list
    similarity: float  # to the original template
    sentence_similarity: float | None = None  # semantic level: the paraphrase to the sentence it replaces


# --- protected words and sites ---------------------------------------------------------------


def protected_words(cases: Iterable[Case]) -> frozenset[str]:
    """Lower-cased words of every label (choices and targets): no perturbation may add or remove one."""
    words: set[str] = set()
    for case in cases:
        for label in (case.target, *(case.choices or ())):
            words.update(w.lower() for w in _TOKEN.findall(label))
    return frozenset(words)


def label_counts(text: str, protected: frozenset[str]) -> dict[str, int]:
    """How often each protected word occurs in ``text`` as a whole word (case-insensitive)."""
    counts: dict[str, int] = {}
    for w in _TOKEN.findall(text.lower()):
        if w in protected:
            counts[w] = counts.get(w, 0) + 1
    return counts


def keeps_meaning_markers(original: str, new: str, protected: frozenset[str]) -> bool:
    """``new`` is a valid template with the original's fields and the same protected words."""
    try:
        same_fields = template_fields(new) == template_fields(original)
    except InputError:
        return False
    return same_fields and label_counts(new, protected) == label_counts(original, protected)


def example_ranges(template: str) -> list[tuple[int, int]]:
    """(start, end) of each few-shot example of a message template, role marks included; none in
    a plain text template."""
    if not MARK_RE.search(template):
        return []
    return [(s.start, s.end) for s in segment(template, "example") if s.kind == "example"]


def word_sites(template: str, protected: frozenset[str]) -> list[Site]:
    """The longest letter run of every word outside the fields and the few-shot examples, unless it
    is a protected word or next to a literal brace (editing ``{{x}}`` could make a field)."""
    sites = []
    examples = example_ranges(template)
    for seg in segment(template, "word"):
        if not seg.feature or "{" in seg.text or "}" in seg.text or overlaps(seg, examples):
            continue
        runs = list(_LETTERS.finditer(seg.text))
        if not runs:
            continue
        run = max(runs, key=lambda m: len(m.group()))
        if run.group().lower() in protected or any(m.group().lower() in protected for m in runs):
            continue
        sites.append(Site(seg.start + run.start(), seg.start + run.end(), run.group()))
    return sites


def sentence_sites(template: str, min_words: int = 3) -> list[Site]:
    """The body (no surrounding whitespace) of every sentence of ``min_words`` or more words,
    outside the few-shot examples."""
    sites = []
    examples = example_ranges(template)
    for seg in segment(template, "sentence"):
        body = seg.text.strip()
        if not seg.feature or len(body.split()) < min_words or overlaps(seg, examples):
            continue
        start = seg.start + seg.text.index(body)
        sites.append(Site(start, start + len(body), body))
    return sites


# --- edits of one site -----------------------------------------------------------------------


def swap_letters(word: str, i: int) -> str:
    """``word`` with the letters at ``i`` and ``i + 1`` swapped: the typo of a hurried typist."""
    return word[:i] + word[i + 1] + word[i] + word[i + 2 :]


def typo(word: str, rng: random.Random) -> str:
    """One character-level edit of ``word`` (the first letter is kept, as a reader skims by it)."""
    ops = ["delete", "insert", "substitute"] + (["swap"] if len(word) >= 4 else [])
    op = rng.choice(ops)
    i = rng.randrange(1, len(word)) if len(word) > 1 else 0
    if op == "swap":
        return swap_letters(word, rng.randrange(1, len(word) - 1))
    if op == "delete" and len(word) > 2:
        return word[:i] + word[i + 1 :]
    if op == "substitute" and word[i].lower() in _KEYBOARD:
        new = rng.choice(_KEYBOARD[word[i].lower()])
        return word[:i] + (new.upper() if word[i].isupper() else new) + word[i + 1 :]
    return word[:i] + rng.choice(string.ascii_lowercase) + word[i:]


def segment_variants(text: str) -> list[tuple[str, str]]:
    """Deterministic meaning-preserving variants of a segment, (description, variant text): a
    swap of two middle letters of its longest word, and a casing change (lint's PL105)."""
    out = []
    words = list(re.finditer(r"[A-Za-z]{4,}", text))
    if words:
        w = max(words, key=lambda m: len(m.group()))
        typo_word = swap_letters(w.group(), len(w.group()) // 2 - 1)
        if typo_word != w.group():
            out.append((f"typo {w.group()!r} -> {typo_word!r}", text[: w.start()] + typo_word + text[w.end() :]))
    lower = text.lower()
    if lower != text:
        out.append(("lower case", lower))
    elif text[:1].isalpha():
        out.append(("capitalised", text[:1].upper() + text[1:]))
    return out


def synonyms(word: str) -> tuple[str, ...]:
    """Near-synonyms of ``word`` in its casing (from rewrites.SYNONYMS and MORE_SYNONYMS)."""
    key = word.lower()
    found = tuple(dict.fromkeys((*SYNONYMS.get(key, ()), *MORE_SYNONYMS.get(key, ()))))
    if word.isupper() and len(word) > 1:
        return tuple(s.upper() for s in found)
    return tuple(s[0].upper() + s[1:] if word[0].isupper() else s for s in found)


def distractor(rng: random.Random) -> str:
    """A StressTest sentence, or (one time in three) a CheckList-style random 10-character string."""
    if rng.random() < 1 / 3:
        return "".join(rng.choice(string.ascii_letters + string.digits) for _ in range(10))
    return rng.choice(DISTRACTORS)


# --- placement and the filter ----------------------------------------------------------------

Paraphraser = Callable[[str, int, int], list[str]]  # (sentence, n, seed) -> paraphrases


def perturb(
    template: str,
    level: str,
    *,
    sites: Sequence[Site],
    placement: str,
    budget: int,
    rng: random.Random,
    similarity: SimilarityModel,
    threshold: float,
    protected: frozenset[str],
    edits: int = 2,
    top: int | None = None,
    paraphrase: Paraphraser | None = None,
    max_tries: int | None = None,
) -> list[Perturbation]:
    """Up to ``budget`` distinct perturbations of ``template`` that pass the meaning filter.

    ``sites`` are word sites for the character and word levels, sentence sites for the others.
    Character and word edits change ``edits`` sites at once; sentence and semantic edits one.
    ``guided`` draws from the ``top`` most important sites (default and at least: the number of
    sites one prompt changes), widened by one site after every ``budget`` tries that find nothing
    new; so it attacks the most important words first, as TextBugger and TextFooler do.
    """
    if level not in LEVELS:
        raise InputError(f"unknown level {level!r}; choose from: {', '.join(LEVELS)}")
    if placement not in PLACEMENTS:
        raise InputError(f"unknown placement {placement!r}; choose from: {', '.join(PLACEMENTS)}")
    if level == "word":  # only words with a synonym are sites for a synonym swap
        usable = [i for i, s in enumerate(sites) if synonyms(s.text)]
    elif level == "character":  # a typo in "or" or "is" makes another word more often than a misspelling
        usable = [i for i, s in enumerate(sites) if len(s.text) >= 3]
    else:
        usable = list(range(len(sites)))
    if level == "semantic" and paraphrase is None:
        raise InputError("the semantic level needs a paraphraser (a local model); leave it out of --levels")
    per_prompt = min(edits, len(usable)) if level in ("character", "word") else 1
    if not usable or per_prompt < 1:
        return []
    if placement == "guided":
        usable.sort(key=lambda i: -sites[i].importance)  # stable: ties keep text order
    window = len(usable) if placement == "random" else min(len(usable), max(top or per_prompt, per_prompt))
    max_tries = max_tries or 30 * budget
    paraphrases: dict[int, list[str]] = {}
    out: list[Perturbation] = []
    seen = {template}
    stale = 0
    for _ in range(max_tries):
        if len(out) >= budget:
            break
        chosen = sorted(rng.sample(usable[:window], per_prompt))
        new_texts = [_edit_site(level, i, sites[i].text, rng, paraphrase, paraphrases, budget) for i in chosen]
        text = _apply(template, [(sites[i].start, sites[i].end, t) for i, t in zip(chosen, new_texts)])
        ok = text not in seen and keeps_meaning_markers(template, text, protected)
        sim = similarity.cosine(template, text) if ok else 0.0
        part = None
        if ok and level == "semantic":
            part = min(similarity.cosine(sites[i].text, t) for i, t in zip(chosen, new_texts))
            ok = part >= threshold
        if ok and sim >= threshold:
            seen.add(text)
            out.append(Perturbation(level, placement, text, tuple(
                f"{sites[i].text!r} -> {t!r}" for i, t in zip(chosen, new_texts)), tuple(chosen), sim, part))
            stale = 0
        else:
            seen.add(text)
            stale += 1
            if stale >= budget and window < len(usable):
                window, stale = window + 1, 0
    return out


def _edit_site(level: str, i: int, text: str, rng: random.Random, paraphrase: Paraphraser | None,
               paraphrases: dict[int, list[str]], budget: int) -> str:
    """The new text of site ``i`` (``text``) at ``level``; ``paraphrases`` caches each site's
    sampled paraphrases, handed out one at a time."""
    if level == "character":
        return typo(text, rng)
    if level == "word":
        return rng.choice(synonyms(text))
    if level == "sentence":
        return f"{text} {distractor(rng)}"
    if i not in paraphrases:
        if paraphrase is None:  # perturb() checks it first; this keeps the type checker honest
            raise InputError("the semantic level needs a paraphraser (a local model); leave it out of --levels")
        found = paraphrase(text, budget + 2, rng.randrange(2**31))
        paraphrases[i] = [p for p in dict.fromkeys(found) if p.strip() and p.strip() != text]
    return paraphrases[i].pop(0) if paraphrases[i] else text


def _apply(template: str, replacements: Sequence[tuple[int, int, str]]) -> str:
    """``template`` with each non-overlapping span ``[start, end)`` replaced, right to left."""
    for start, end, new in sorted(replacements, reverse=True):
        template = template[:start] + new + template[end:]
    return template


# --- formatting variants ---------------------------------------------------------------------

# A descriptor at the start of a line: "Answer:", "Statement: {input}" (FormatSpread, Sclar et al. 2023).
# A message template's role mark (promptlens.templates) starts a line too.
_DESCRIPTOR = re.compile(r"(?m)(?:^|(?<=[\x11\x12\x13]))([ \t]*)([A-Za-z][A-Za-z ]{0,24}?):(?=[ \t]|$|\{)")


def format_variants(template: str, protected: frozenset[str]) -> list[tuple[str, str]]:
    """(name, template) for formatting variants that keep the words: descriptor separators
    (``Answer:`` / ``Answer -`` / ``Answer::``), descriptor casing, and line spacing.
    The original comes first; variants equal to an earlier one, or that change fields or
    label words, are left out."""

    def descriptors(fn: Callable[[str], str]) -> str:
        def sub(m: re.Match[str]) -> str:
            name = m.group(2)
            if any(w.lower() in protected for w in _TOKEN.findall(name)):
                return m.group()
            return m.group(1) + fn(name)
        return _DESCRIPTOR.sub(sub, template)

    candidates = [
        ("original", template),
        ("separator ' -'", descriptors(lambda n: n + " -")),
        ("separator '::'", descriptors(lambda n: n + "::")),
        ("separator ' :'", descriptors(lambda n: n + " :")),
        ("descriptors lower case", descriptors(lambda n: n.lower() + ":")),
        ("descriptors upper case", descriptors(lambda n: n.upper() + ":")),
        ("lines joined by a space", re.sub(r"[ \t]*\n[ \t]*", " ", template.strip("\n"))),
        ("blank line between lines", re.sub(r"\n+", "\n\n", template)),
    ]
    out: list[tuple[str, str]] = []
    for name, text in candidates:
        if text in (t for _, t in out) or not keeps_meaning_markers(template, text, protected):
            continue
        out.append((name, text))
    return out
