"""Renderers for ``promptlens lint``: text, JSON, SARIF 2.1.0 and JUnit XML.

Each takes a ``LintResult`` and returns the whole document as text; the CLI writes it.
"""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET  # noqa: S405 - writes JUnit XML, never parses input
from pathlib import Path
from typing import Callable

from .lint import RULES, SEVERITIES, Finding, LintResult, TemplateResult, promptlens_version

SARIF_SCHEMA = "https://docs.oasis-open.org/sarif/sarif/v2.1.0/errata01/os/schemas/sarif-schema-2.1.0.json"
# Where each rule is documented: the rules page that ships in the package (generated from RULES
# and _RULE_HELP by rules_markdown(); tests/test_lint.py keeps the two equal). The project has
# no public web address, so a link that resolves is the installed file's own URI.
RULES_DOC = Path(__file__).resolve().parent / "docs" / "rules.md"
_RULE_HELP = {
    "PL001": "Every `{field}` of the template needs a value in every case, and every case var should fill a "
             "field. Add the missing var to the cases, or rename the field to match.",
    "PL002": "A segment with no words, or one that repeats an earlier segment, costs tokens and can skew the "
             "model. Delete it.",
    "PL003": "The model picks a label more reliably when the instruction names the labels. Mention each choice "
             "of the cases in the template, e.g. `Answer plausible or implausible.`",
    "PL004": "Prompt plus target (or the longest choice) does not fit the model's context. Shorten the "
             "template or the cases, or use a model with a longer context.",
    "PL101": "The template fails too many of its own cases. Repair it with `promptlens fix --template FILE "
             "--cases FILE`, or relax `thresholds.accuracy` / `thresholds.mismatch` in promptlens.yaml.",
    "PL102": "The right label wins over the best wrong one by less than `thresholds.margin` nats on average. "
             "Repair it with `promptlens fix`, or relax the threshold.",
    "PL103": "Removing this segment raises the score of the wanted output on the cases: its whole "
             "interval (at the level the report states; 95% by default) lies below zero, after the correction "
             "for the number of segments tested. Delete or rewrite it (`promptlens fix` does it with a search); a "
             "whole few-shot example is dropped, never rewritten (check its label first).",
    "PL104": "The segment's effect on the score is within ±`thresholds.dead` nats, interval included. "
             "Delete it to save tokens, or keep it and suppress the note.",
    "PL105": "A typo or a casing change in this segment drops the score by more than `thresholds.fragile` "
             "nats: the answer hinges on its exact form. Reword it. Few-shot examples and their answers are not "
             "tried: a typo there could change a label.",
    "PL106": "A few-shot example's answer, scored after the system text, the other examples and the example's "
             "own question, is less likely than another label: the model disagrees with the example, which is how "
             "a wrong label shows itself. Check the label; promptlens never changes one.",
}
_GITLAB_SEVERITY = {"error": "critical", "warning": "major", "note": "info"}
_GITHUB_LEVEL = {"error": "error", "warning": "warning", "note": "notice"}
_COLORS = {"error": "31", "warning": "33", "note": "36"}


def rule_uri(rule_id: str) -> str:
    """The absolute URI of a rule's section in the shipped rules page (SARIF ``helpUri``)."""
    return f"{RULES_DOC.as_uri()}#{rule_id.lower()}"


def rules_markdown() -> str:
    """The rules page, ``promptlens/docs/rules.md``: every rule's level, what it needs and how to act."""
    needs = {"PL004": "the tokenizer"}
    parts = ["# promptlens lint rules\n\n"
             "Written from `promptlens.lint_rules.RULES` (do not edit by hand: `tests/test_lint.py` checks it "
             "against the code). Each SARIF rule's `helpUri` points to its section here. Suppress a rule in "
             "`promptlens.yaml` (`suppress: [{rule: PL104, line: 3}]`) or with `# promptlens: ignore PL104` "
             "at the end of a template line; change its level with `severity: {PL104: error}`.\n"]
    for r in RULES.values():
        need = needs.get(r.id, "the model" if r.model else "nothing (static)")
        parts.append(f'\n<a id="{r.id.lower()}"></a>\n## {r.id} {r.name}\n\n'
                     f"Level: {r.severity}. Needs: {need}.\n\n{r.summary}\n\n{_RULE_HELP[r.id]}\n")
    return "".join(parts)


def render(result: LintResult, fmt: str, *, fail_on: str = "error", color: bool = False) -> str:
    renderers: dict[str, Callable[[], str]] = {
        "text": lambda: text_report(result, fail_on=fail_on, color=color),
        "json": lambda: json_report(result, fail_on=fail_on),
        "sarif": lambda: sarif_report(result),
        "junit": lambda: junit_report(result, fail_on=fail_on),
        "github": lambda: github_report(result, fail_on=fail_on),
        "gitlab": lambda: gitlab_report(result),
    }
    return renderers[fmt]()


def _where(f: Finding) -> str:
    return f"{f.path}:{f.start_line}:{f.start_col}"


def _counts(findings: list[Finding]) -> str:
    parts = []
    for level in SEVERITIES:
        n = sum(f.severity == level for f in findings)
        parts.append(f"{n} {level}{'s' if n != 1 else ''}")
    return ", ".join(parts)


def text_report(result: LintResult, *, fail_on: str = "error", color: bool = False) -> str:
    """``path:line:col: severity PLxxx message`` lines with hints, the suppressed ones, a summary."""
    lines = []
    for f in result.findings:
        level = f"\x1b[{_COLORS[f.severity]}m{f.severity}\x1b[0m" if color else f.severity
        lines += [f"{_where(f)}: {level} {f.rule_id} {f.message}", f"    hint: {f.hint}"]
    suppressed = result.suppressed
    if suppressed:
        lines.append("suppressed:")
        lines += [f"  {_where(f)}: {f.severity} {f.rule_id} {f.message} [{f.suppressed}]" for f in suppressed]
    for t in result.templates:
        for rule, why in t.skipped.items():
            lines.append(f"{t.path}: {rule} not run: {why}")
        lines += [f"{t.path}: {line}" for line in statistics_lines(t)]
    cached = sum(t.cached for t in result.templates)
    n = len(result.templates)
    verdict = "FAIL" if result.failed(fail_on) else "ok"
    lines.append(f"{verdict}: {n} template{'s' if n != 1 else ''}, {_counts(result.findings)}, "
                 f"{len(suppressed)} suppressed; model {result.model}, {cached} of {n} from cache "
                 f"(--fail-on {fail_on})")
    return "\n".join(lines) + "\n"


def statistics_lines(t: TemplateResult) -> list[str]:
    """How PL103/PL104 decided for one template, and the segments whose verdict the correction changed."""
    st = t.statistics
    if not st:
        return []
    return [f"PL103/PL104 statistics: {st['text']}"] + [f"  {u}" for u in st.get("uncorrected", ())]


def json_report(result: LintResult, *, fail_on: str = "error") -> str:
    from .report import dumps

    data = {
        "tool": "promptlens lint", "version": promptlens_version(), "model": result.model, "method": result.method,
        "fail_on": fail_on, "failed": result.failed(fail_on),
        "summary": {level: sum(f.severity == level for f in result.findings) for level in SEVERITIES}
        | {"suppressed": len(result.suppressed)},
        "templates": result.templates,
    }
    return dumps(data)


def sarif_report(result: LintResult) -> str:
    """SARIF 2.1.0: one run, the rules as ``tool.driver.rules``, one result per finding
    (suppressed findings carry ``suppressions``). Columns count Unicode code points."""
    ids = list(RULES)
    rules = [{
        "id": r.id, "name": r.name,
        "shortDescription": {"text": r.summary},
        "fullDescription": {"text": r.summary + (" Needs the model." if r.model else " Static: no model.")},
        "help": {"text": _RULE_HELP[r.id], "markdown": _RULE_HELP[r.id]},
        "helpUri": rule_uri(r.id),
        "defaultConfiguration": {"level": r.severity},
        "properties": {"tags": ["prompt", "model" if r.model else "static"]},
    } for r in RULES.values()]
    results = []
    for t in result.templates:
        for f in t.findings:
            item = {
                "ruleId": f.rule_id, "ruleIndex": ids.index(f.rule_id), "level": f.severity,
                "message": {"text": f"{f.message}. Hint: {f.hint}"},
                "locations": [{"physicalLocation": {
                    "artifactLocation": {"uri": f.path, "uriBaseId": "%SRCROOT%"},
                    "region": {"startLine": f.start_line, "startColumn": f.start_col,
                               "endLine": f.end_line, "endColumn": f.end_col},
                }}],
            }
            if f.suppressed:
                kind = "inSource" if f.suppressed.startswith("inline") else "external"
                item["suppressions"] = [{"kind": kind, "justification": f"suppressed by {f.suppressed}"}]
            results.append(item)
    doc = {
        "$schema": SARIF_SCHEMA,
        "version": "2.1.0",
        "runs": [{
            "tool": {"driver": {"name": "promptlens", "version": promptlens_version(), "rules": rules,
                                "properties": {"model": result.model, "method": result.method}}},
            "invocations": [{
                # The lint itself ran; findings are results, not a failed execution (a usage or
                # config error exits 2 before any report is written).
                "executionSuccessful": True,
                "toolExecutionNotifications": [
                    {"descriptor": {"id": rule}, "level": "note", "message": {"text": f"{rule} not run on {t.path}: {why}"}}
                    for t in result.templates for rule, why in t.skipped.items()],
            }],
            "originalUriBaseIds": {"%SRCROOT%": {"uri": Path.cwd().as_uri() + "/",
                                                 "description": {"text": "the folder promptlens lint ran in"}}},
            # How PL103/PL104 decided, per template: level, interval, cases, multiplicity correction.
            "properties": {"statistics": {t.path: dict(t.statistics) for t in result.templates if t.statistics}},
            "columnKind": "unicodeCodePoints",
            "results": results,
        }],
    }
    return json.dumps(doc, indent=2, ensure_ascii=False) + "\n"


def junit_report(result: LintResult, *, fail_on: str = "error") -> str:
    """One ``testsuite`` per template, one ``testcase`` per rule. A rule fails when it has a finding
    at or above ``fail_on``; findings below that go to ``system-out``; rules that did not run are
    ``skipped``."""
    worst = len(SEVERITIES) if fail_on == "never" else SEVERITIES.index(fail_on) + 1
    root = ET.Element("testsuites", name="promptlens lint")
    totals = {"tests": 0, "failures": 0, "errors": 0}  # the common JUnit XSD has no `skipped` here
    for t in result.templates:
        suite = ET.SubElement(root, "testsuite", name=t.path)
        if t.statistics:
            props = ET.SubElement(suite, "properties")
            ET.SubElement(props, "property", name="statistics", value=str(t.statistics["text"]))
        counts = {"tests": 0, "failures": 0, "errors": 0, "skipped": 0}
        for rule in RULES.values():
            case = ET.SubElement(suite, "testcase", classname=t.path, name=f"{rule.id} {rule.name}")
            counts["tests"] += 1
            active = [f for f in t.findings if f.rule_id == rule.id and not f.suppressed]
            failing = [f for f in active if SEVERITIES.index(f.severity) < worst]
            body = "\n".join(f"{_where(f)}: {f.severity} {f.rule_id} {f.message}\n    hint: {f.hint}" for f in active)
            if failing:
                counts["failures"] += 1
                el = ET.SubElement(case, "failure", type=failing[0].severity,
                                   message=f"{len(failing)} finding(s): {failing[0].message}")
                el.text = body
            elif rule.id in t.skipped:
                counts["skipped"] += 1
                ET.SubElement(case, "skipped", message=t.skipped[rule.id])
            out = [body] if active and not failing else []
            if rule.id == "PL103":  # say how it decided, pass or fail
                out += statistics_lines(t)
            if out and rule.id not in t.skipped:
                ET.SubElement(case, "system-out").text = "\n".join(out)
        suite.set("time", f"{t.seconds:.3f}")
        for k, v in counts.items():
            suite.set(k, str(v))
            if k in totals:
                totals[k] += v
    for k, v in totals.items():
        root.set(k, str(v))
    ET.indent(root)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(root, encoding="unicode") + "\n"


def _github_escape(text: str, *, prop: bool = False) -> str:
    """Workflow-command escaping: data escapes %, CR and LF; properties also ':' and ','."""
    text = text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")
    return text.replace(":", "%3A").replace(",", "%2C") if prop else text


def github_report(result: LintResult, *, fail_on: str = "error") -> str:
    """GitHub Actions workflow commands (``::error file=...,line=...,col=...::message``): the
    findings show as annotations on the pull request without code scanning. Suppressed findings are
    left out; a plain summary line ends the output."""
    lines = []
    for f in result.findings:
        props = ",".join(f"{k}={_github_escape(str(v), prop=True)}" for k, v in (
            ("file", f.path), ("line", f.start_line), ("endLine", f.end_line), ("col", f.start_col),
            ("endColumn", f.end_col), ("title", f"{f.rule_id} {RULES[f.rule_id].name}")))
        lines.append(f"::{_GITHUB_LEVEL[f.severity]} {props}::{_github_escape(f'{f.message}. Hint: {f.hint}')}")
    n = len(result.templates)
    verdict = "FAIL" if result.failed(fail_on) else "ok"
    lines.append(f"{verdict}: {n} template{'s' if n != 1 else ''}, {_counts(result.findings)}, "
                 f"{len(result.suppressed)} suppressed (--fail-on {fail_on})")
    return "\n".join(lines) + "\n"


def gitlab_report(result: LintResult) -> str:
    """GitLab Code Quality JSON: a list of issues with ``description``, ``check_name``, a stable
    ``fingerprint``, ``severity`` and ``location`` (path, begin/end line and column). Suppressed
    findings are left out."""
    import hashlib

    issues = []
    for f in result.findings:
        key = json.dumps([f.rule_id, f.path, f.start_line, f.start_col, f.message])
        issues.append({
            "type": "issue",
            "description": f"{f.rule_id} {f.message}",
            "check_name": f"{f.rule_id} {RULES[f.rule_id].name}",
            "content": {"body": f"Hint: {f.hint}"},
            "categories": ["Bug Risk"],
            "fingerprint": hashlib.sha256(key.encode()).hexdigest(),
            "severity": _GITLAB_SEVERITY[f.severity],
            "location": {"path": f.path, "lines": {"begin": f.start_line, "end": f.end_line},
                         "positions": {"begin": {"line": f.start_line, "column": f.start_col},
                                       "end": {"line": f.end_line, "column": f.end_col}}},
        })
    return json.dumps(issues, indent=2, ensure_ascii=False) + "\n"
