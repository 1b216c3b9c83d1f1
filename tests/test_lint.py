"""promptlens lint: each rule fires on a template made to break it and stays silent on a clean one
(rule fake, exact numbers), suppressions, the cache, the four report formats, exit codes, and one
real-model run."""

from __future__ import annotations

import dataclasses
import importlib
import json
import os
import subprocess
import sys
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path

import pytest

from promptlens.errors import InputError
from promptlens.lint import RULES, LintTarget, Thresholds, lint, load_config
from promptlens.lint_report import render
from tests.rule_backend import RuleBackend

ROOT = Path(__file__).resolve().parent.parent
SCHEMA = Path(__file__).parent / "data" / "sarif-schema-2.1.0.json"
EMBEDDED = "SmolLM2-135M-Instruct"  # the model name a CLI run without --model keys its cache on

CLEAN = "Is it plausible or implausible?\nStatement: {input}\nAnswer with one word.\n"
# Every sentence of CLEAN raises the margin by 1 nat: nothing is dead, harmful or fragile.
HELPS = {("plausible", "plausible"): 1.0, ("statement", "plausible"): 1.0, ("answer", "plausible"): 1.0}
CHOICE_CASES = [
    {"vars": {"input": "A scored a goal"}, "target": "plausible", "choices": ["plausible", "implausible"]},
    {"vars": {"input": "B hit a homerun"}, "target": "plausible", "choices": ["plausible", "implausible"]},
]
# Four cases: the fewest on which PL103/PL104 call anything (promptlens.stats.MIN_CASES).
FREE_CASES = [{"vars": {"input": w}, "target": w + "s"} for w in ("cat", "dog", "car", "cup")]


@dataclass
class TokenBackend(RuleBackend):
    """The rule fake plus a word "tokenizer" and a context length, for PL004."""

    context_length: int = 20

    def encode_prompt(self, prompt: str) -> list[int]:
        return list(range(len(prompt.split())))

    def encode_target(self, target: str) -> list[int]:
        return list(range(len(target.split())))


def write(folder: Path, template: str, cases: list[dict], name: str = "t.txt") -> LintTarget:
    (folder / name).write_text(template, encoding="utf-8")
    (folder / "cases.jsonl").write_text("".join(json.dumps(c) + "\n" for c in cases), encoding="utf-8")
    return LintTarget(folder / name, folder / "cases.jsonl")


def run(target: LintTarget, backend=None, **kwargs):
    return lint([target], backend=backend or RuleBackend(bonus=HELPS),
                cache_dir=None, **kwargs)


def ids(result, suppressed: bool = False) -> list[str]:
    return [f.rule_id for f in (result.suppressed if suppressed else result.findings)]


# --- static rules ----------------------------------------------------------------------------


def test_clean_template_has_no_findings(tmp_path):
    result = run(write(tmp_path, CLEAN, CHOICE_CASES))
    assert result.findings == [] and not result.failed("note")


def test_pl001_field_without_value_and_var_without_field(tmp_path):
    template = "Is it plausible or implausible?\nStatement: {input}\nSport: {sport}\n"
    cases = [dict(c, vars={**c["vars"], "league": "NHL"}) for c in CHOICE_CASES]
    result = run(write(tmp_path, template, cases))
    missing, unused = [f for f in result.findings if f.rule_id == "PL001"]
    assert (missing.severity, missing.start_line, missing.start_col, missing.end_col) == ("error", 3, 8, 15)
    assert "{sport}" in missing.message and "2 of 2 cases" in missing.message
    assert unused.severity == "warning" and "`league`" in unused.message
    # The template cannot be filled, so the model rules do not run.
    assert result.templates[0].skipped["PL101"].startswith("the template cannot be filled")


def test_pl002_duplicate_and_empty_segments(tmp_path):
    template = "Is it plausible or implausible?\nBe brief.\n...\nStatement: {input}\nbe  BRIEF!\n"
    found = [f for f in run(write(tmp_path, template, CHOICE_CASES)).findings if f.rule_id == "PL002"]
    assert [(f.start_line, f.start_col, f.end_col) for f in found] == [(3, 1, 4), (5, 1, 11)]
    assert "holds no words" in found[0].message and "repeats line 2" in found[1].message


def test_pl003_choice_never_mentioned(tmp_path):
    # 'implausible' contains 'plausible', but does not mention it.
    template = "Is the statement implausible?\nStatement: {input}\n"
    found = [f for f in run(write(tmp_path, template, CHOICE_CASES)).findings if f.rule_id == "PL003"]
    assert len(found) == 1 and "'plausible'" in found[0].message and found[0].start_line == 1


def test_pl004_context_overflow_needs_only_a_tokenizer(tmp_path):
    cases = [*FREE_CASES, {"vars": {"input": "word " * 30}, "target": "words"}]
    target = write(tmp_path, "Plural of {input}:", cases)
    result = run(target, TokenBackend(context_length=20))
    (finding,) = [f for f in result.findings if f.rule_id == "PL004"]
    assert "1 of 5 cases" in finding.message and "case 5: 34 tokens" in finding.message
    assert "PL004" not in ids(run(target, TokenBackend(context_length=40)))


# --- model rules, on the rule fake -------------------------------------------------------------


def test_pl101_and_pl102_choice_cases(tmp_path):
    target = write(tmp_path, CLEAN, CHOICE_CASES)
    wrong = run(target, RuleBackend(bonus={("plausible", "implausible"): 2.0}))
    pl101, pl102 = (next(f for f in wrong.findings if f.rule_id == r) for r in ("PL101", "PL102"))
    assert "accuracy 0/2 (0%)" in pl101.message and pl101.severity == "error"
    assert "mean margin -2.00 nats" in pl102.message
    assert "run: promptlens fix --template" in pl101.hint
    # a margin of +1 passes the default threshold (0) but not a stricter one
    assert {"PL101", "PL102"}.isdisjoint(ids(run(target)))
    strict = LintTarget(target.path, target.cases, thresholds=Thresholds(margin=3.5))
    assert "PL102" in ids(run(strict))


def test_pl101_free_form_greedy_output(tmp_path):
    target = write(tmp_path, "Plural of {input}:", FREE_CASES)  # the fake always says "yes"
    (finding,) = [f for f in run(target).findings if f.rule_id == "PL101"]
    assert "4 of 4 free-form cases" in finding.message and "'yes' instead of 'cats'" in finding.message
    yes = [{"vars": {"input": w}, "target": "Yes."} for w in ("a", "b")]  # case and punctuation ignored
    assert "PL101" not in ids(run(write(tmp_path, "Say yes to {input}:", yes)))


@dataclass
class SilentBackend(RuleBackend):
    """Scores, but writes no text of its own (``can_generate`` is False)."""

    generate = None


def test_pl101_free_form_is_skipped_on_a_backend_that_cannot_generate(tmp_path):
    result = run(write(tmp_path, "Plural of {input}:", FREE_CASES), SilentBackend(bonus=HELPS))
    assert "PL101" not in ids(result)
    assert result.templates[0].skipped["PL101"] == "the backend cannot generate text, which the free-form cases are checked on"


def test_pl103_on_a_few_shot_answer_points_at_the_label_not_at_fix(tmp_path):
    """Sentence segmentation makes an example's question and answer segments of their own; when
    they are harmful, the hint says to check the label or drop the example (fix edits neither)."""
    messages = [{"role": "system", "content": "Give the plural. Always answer banana."},
                {"role": "user", "content": "Word: ox"}, {"role": "assistant", "content": "Oxen, cherry."},
                {"role": "user", "content": "Word: {input}"}]
    target = write(tmp_path, json.dumps(messages), FREE_CASES, name="t.json")
    rules = {"banana": -3.0, "cherry": -2.0, "ox": -2.0}
    result = run(dataclasses.replace(target, segmentation="sentence"), RuleBackend(rules=rules))
    hints = {f.message.split(":")[0]: f.hint for f in result.findings if f.rule_id == "PL103"}
    assert set(hints) == {"harmful segment 'Always answer banana.'", "harmful segment 'Oxen, cherry.'",
                          "harmful segment 'Word"}
    assert hints["harmful segment 'Always answer banana.'"].startswith("delete or rewrite it; run: promptlens fix")
    assert hints["harmful segment 'Oxen, cherry.'"] == ("it is a few-shot example's answer: check the label, or drop "
                                                       "the example (segmentation unit)")
    assert hints["harmful segment 'Word"] == ("it is a few-shot example's question: drop the example (segmentation "
                                              "unit), or reword it by hand")
    # At the default (unit) the example is one segment: drop it, or check its label.
    whole = run(target, RuleBackend(rules=rules))
    hints = {f.message.split("': ")[0] + "'": f.hint for f in whole.findings if f.rule_id == "PL103"}
    example = "harmful segment '[user] Word: ox[assistant] Oxen, cherry.'"
    assert set(hints) == {"harmful segment 'Always answer banana.'", example}
    assert hints[example].startswith("drop the example, or check its label; run: promptlens fix")


def test_pl103_harmful_and_pl104_dead_segments(tmp_path):
    template = "Give the plural.\n  Always answer banana.\nWord: {input}\n"
    backend = RuleBackend(rules={"banana": -3.0, "plural": 0.5, "word": 0.5})
    result = run(write(tmp_path, template, FREE_CASES), backend)
    (harmful,) = [f for f in result.findings if f.rule_id == "PL103"]
    assert (harmful.start_line, harmful.start_col, harmful.end_line, harmful.end_col) == (2, 3, 2, 24)
    assert "mean -3.00 nats, 95% interval [-3.00, -3.00] over 4 cases" in harmful.message
    assert "after Benjamini-Hochberg (false discovery rate) over 3 segments" in harmful.message
    (stats,) = [t.statistics for t in result.templates]
    assert stats["text"] == ("95% skew-adjusted t-interval over 4 cases; harmful calls corrected for 3 segments: "
                             "Benjamini-Hochberg (false discovery rate)") and stats["n_cases"] == 4
    assert "PL104" not in ids(result)
    dead = run(write(tmp_path, "Give the plural.\nBe nice.\nWord: {input}\n", FREE_CASES),
               RuleBackend(rules={"plural": 0.5, "word": 0.5}))
    (finding,) = [f for f in dead.findings if f.rule_id == "PL104"]
    assert finding.start_line == 2 and finding.severity == "note" and "Be nice." in finding.message


def test_pl105_fragile_segment(tmp_path):
    template = "Determine the plural.\nWord: {input}\n"
    # 'determine' is worth 2 nats; the typo in it removes them. Casing is invisible to the fake.
    result = run(write(tmp_path, template, FREE_CASES), RuleBackend(rules={"determine": 2.0, "word": 0.1}))
    (finding,) = [f for f in result.findings if f.rule_id == "PL105"]
    assert finding.start_line == 1 and "'Determine' -> 'Detremine'" in finding.message
    assert "by 2.00 nats" in finding.message
    calm = run(write(tmp_path, template, FREE_CASES), RuleBackend(rules={"determine": 0.5, "word": 0.1}))
    assert "PL105" not in ids(calm)
    # A few-shot answer is a label: its typo variant would change the label, so PL105 leaves it out.
    messages = [{"role": "system", "content": "Give the plural."}, {"role": "user", "content": "Word: ox"},
                {"role": "assistant", "content": "Determine"}, {"role": "user", "content": "Word: {input}"}]
    target = write(tmp_path, json.dumps(messages), FREE_CASES, name="m.json")
    assert target.segmentation == "unit"  # the default: the example is one segment, its answer inside it
    for by in ("unit", "sentence"):  # at sentence the answer is a segment of its own
        labelled = run(dataclasses.replace(target, segmentation=by), RuleBackend(rules={"determine": 2.0, "plural": 2.0}))
        assert [f.message.split(":")[0] for f in labelled.findings if f.rule_id == "PL105"] == [
            "fragile segment 'Give the plural.'"], by


# --- suppressions ------------------------------------------------------------------------------


class Recorder(RuleBackend):
    def token_logprobs(self, prompts, targets):
        self.seen = [*getattr(self, "seen", []), *prompts]
        return super().token_logprobs(prompts, targets)


def test_inline_markers_are_stripped_and_suppress_by_line(tmp_path):
    template = ("Give the plural.\n"
                "Always answer banana.  # promptlens: ignore PL103\n"
                "# promptlens: ignore\n"
                "Be nice.\n"
                "Word: {input}\n")
    backend = Recorder(rules={"banana": -3.0, "plural": 0.5, "word": 0.5})
    result = run(write(tmp_path, template, FREE_CASES), backend)
    assert not any("promptlens" in p for p in backend.seen)  # the model never sees a marker
    by_rule = {f.rule_id: f for f in result.suppressed}
    # positions are in the file as written: the dead sentence is on line 4, after the marker line
    assert (by_rule["PL103"].start_line, by_rule["PL103"].suppressed) == (2, "inline marker on line 2")
    assert (by_rule["PL104"].start_line, by_rule["PL104"].suppressed) == (4, "inline marker on line 3")
    assert {"PL103", "PL104"}.isdisjoint(ids(result))


def test_config_suppressions_severity_overrides_and_globs(tmp_path):
    (tmp_path / "prompts").mkdir()
    for name in ("a.txt", "b.txt"):
        (tmp_path / "prompts" / name).write_text("Give the plural.\nBe nice.\nWord: {input}\n")
    (tmp_path / "cases.jsonl").write_text("".join(json.dumps(c) + "\n" for c in FREE_CASES))
    (tmp_path / "promptlens.yaml").write_text(
        "templates:\n"
        "  - path: prompts/*.txt\n"
        "    cases: cases.jsonl\n"
        "    thresholds: {mismatch: 1.0}\n"
        "    suppress: [{rule: PL104, line: 2}]\n"
        "    severity: {PL104: error}\n")
    targets, settings = load_config(tmp_path / "promptlens.yaml")
    assert [t.path.name for t in targets] == ["a.txt", "b.txt"] and settings == {}
    result = lint(targets, backend=RuleBackend(rules={"plural": 0.5, "word": 0.5}), cache_dir=None)
    assert ids(result) == [] and ids(result, suppressed=True) == ["PL104", "PL104"]
    assert result.suppressed[0].severity == "error" and "promptlens.yaml:5" in result.suppressed[0].suppressed


@pytest.mark.parametrize("text, message", [
    ("templates: [\n", "promptlens.yaml:2: invalid YAML"),
    ("templates: []\n", "promptlens.yaml:1: `templates:` must be a non-empty list"),
    ("model: x\nrules: 3\n", "promptlens.yaml:2: unknown config key 'rules'"),
    ("templates:\n  - path: nothing/*.txt\n    cases: c.jsonl\n", "promptlens.yaml:2: `nothing/*.txt` matches no files"),
    ("templates:\n  - path: t.txt\n    cases: c.jsonl\n    thresholds: {acc: 1}\n", "promptlens.yaml:4: unknown threshold 'acc'"),
    ("templates:\n  - path: t.txt\n\n    suppress: [{rule: PL999}]\n    cases: c.jsonl\n", "promptlens.yaml:4: unknown rule 'PL999'"),
    ("templates:\n  - cases: c.jsonl\n", "promptlens.yaml:2: the entry needs `path:`"),
])
def test_config_errors_name_file_and_line(tmp_path, text, message):
    (tmp_path / "t.txt").write_text("x {input}")
    (tmp_path / "promptlens.yaml").write_text(text)
    with pytest.raises(InputError) as err:
        load_config(tmp_path / "promptlens.yaml")
    assert str(err.value).startswith(str(tmp_path / message.split(":")[0])) and message.split(":", 1)[1] in str(err.value)
    assert "\n" not in str(err.value)


# --- cache ---------------------------------------------------------------------------------------


def test_cached_rerun_does_not_touch_the_model(tmp_path, monkeypatch):
    import promptlens.backends.hf as hf

    monkeypatch.chdir(tmp_path)
    target = write(tmp_path, CLEAN, CHOICE_CASES)
    fake = RuleBackend(bonus={("plausible", "implausible"): 2.0}, name=EMBEDDED)
    first = lint([target], backend=fake, cache_dir="cache")
    passes = fake.forward_passes
    assert passes > 0 and not first.templates[0].cached and len(list(Path("cache").glob("*.json"))) == 1

    def no_model(*args, **kwargs):
        raise AssertionError("the model was loaded on a cached rerun")

    monkeypatch.setattr(hf, "load_backend", no_model)
    again = lint([target], cache_dir="cache")  # no backend: it would be loaded on a miss
    assert again.templates[0].cached and again.findings == first.findings
    assert lint([target], backend=fake, cache_dir="cache").templates[0].cached and fake.forward_passes == passes
    # Changing the cases (or thresholds) misses the cache.
    (tmp_path / "cases.jsonl").write_text(json.dumps(CHOICE_CASES[0]) + "\n")
    assert not lint([target], backend=fake, cache_dir="cache").templates[0].cached
    strict = LintTarget(target.path, target.cases, thresholds=Thresholds(margin=3.0))
    assert not lint([strict], backend=fake, cache_dir="cache").templates[0].cached


def test_cache_key_follows_the_model_files_and_the_library_versions(tmp_path, monkeypatch):
    import importlib

    # importlib: `promptlens.lint` as an attribute is the function the package exports.
    lint_module = importlib.import_module("promptlens.lint")

    monkeypatch.chdir(tmp_path)
    target = write(tmp_path, CLEAN, CHOICE_CASES)
    model = tmp_path / "model"
    model.mkdir()
    (model / "config.json").write_text("{}")
    weights = model / "model.safetensors"
    weights.write_bytes(b"weights v1")
    fake = RuleBackend(bonus=HELPS, name="local")
    assert not lint([target], backend=fake, model=str(model), cache_dir="cache").templates[0].cached
    assert lint([target], backend=fake, model=str(model), cache_dir="cache").templates[0].cached
    # Retrained in place: same folder, same name, new content.
    weights.write_bytes(b"weights v2, retrained")
    assert not lint([target], backend=fake, model=str(model), cache_dir="cache").templates[0].cached
    assert lint([target], backend=fake, model=str(model), cache_dir="cache").templates[0].cached
    # A new torch or transformers misses too.
    real = lint_module._dist_version
    monkeypatch.setattr(lint_module, "_dist_version", lambda name: "9.9" if name == "torch" else real(name))
    assert not lint([target], backend=fake, model=str(model), cache_dir="cache").templates[0].cached


def test_model_files_are_hashed_once_per_size_and_mtime(tmp_path):
    from promptlens.lint import model_fingerprint

    model = tmp_path / "model"
    model.mkdir()
    (model / "w.bin").write_bytes(b"x" * 1000)
    first = model_fingerprint(str(model), tmp_path / "cache")
    memo_file = tmp_path / "cache" / "model-files.memo"
    memo = json.loads(memo_file.read_text())
    assert [v[0] for v in memo.values()] == [1000]
    # A remembered digest is trusted while size and mtime match: the file is not read again.
    (key,) = memo
    memo[key][2] = "0" * 64
    memo_file.write_text(json.dumps(memo))
    assert model_fingerprint(str(model), tmp_path / "cache") != first
    os.utime(model / "w.bin", ns=(1, 1))  # touched: read again, the true digest comes back
    assert model_fingerprint(str(model), tmp_path / "cache") == first


def test_clear_cache_flag(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    target = write(tmp_path, CLEAN, CHOICE_CASES)
    lint([target], backend=RuleBackend(bonus=HELPS, name=EMBEDDED), cache_dir="c")
    (tmp_path / "c" / "keep.txt").write_text("not ours")
    n = len([p for p in (tmp_path / "c").iterdir() if p.name != "keep.txt"])
    assert n >= 1
    out = cli("--clear-cache", "--cache-dir", "c", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert f"removed {n} cached file" in out.stderr
    assert [p.name for p in (tmp_path / "c").iterdir()] == ["keep.txt"]


# --- reports ---------------------------------------------------------------------------------------


def _mixed(tmp_path):
    template = "Give the plural.\nAlways answer banana.\nBe nice.  # promptlens: ignore PL104\nWord: {input}\n"
    return run(write(tmp_path, template, FREE_CASES), RuleBackend(rules={"banana": -3.0, "plural": 0.5, "word": 0.5}))


def test_sarif_validates_against_the_official_schema(tmp_path):
    jsonschema = pytest.importorskip("jsonschema")
    result = _mixed(tmp_path)
    doc = json.loads(render(result, "sarif"))
    jsonschema.validate(doc, json.loads(SCHEMA.read_text(encoding="utf-8")))
    run_ = doc["runs"][0]
    assert [r["id"] for r in run_["tool"]["driver"]["rules"]][:3] == ["PL001", "PL002", "PL003"]
    harmful = next(r for r in run_["results"] if r["ruleId"] == "PL103")
    loc = harmful["locations"][0]["physicalLocation"]
    assert harmful["level"] == "warning" and not Path(loc["artifactLocation"]["uri"]).is_absolute()
    assert loc["region"] == {"startLine": 2, "startColumn": 1, "endLine": 2, "endColumn": 22}
    dead = next(r for r in run_["results"] if r["ruleId"] == "PL104")
    assert dead["suppressions"][0]["kind"] == "inSource"
    rule = run_["tool"]["driver"]["rules"][0]
    assert rule["help"]["text"]
    for rule in run_["tool"]["driver"]["rules"]:  # a link that resolves: the rules page the package ships
        check_help_uri(rule["helpUri"], rule["id"])
    assert run_["invocations"][0]["executionSuccessful"] is True
    assert loc["artifactLocation"]["uriBaseId"] == "%SRCROOT%"
    assert run_["originalUriBaseIds"]["%SRCROOT%"]["uri"] == Path.cwd().as_uri() + "/"
    skipped = run_["invocations"][0]["toolExecutionNotifications"]
    assert [n["descriptor"]["id"] for n in skipped] == list(result.templates[0].skipped)


def test_junit_validates_against_a_common_junit_xsd(tmp_path):
    xmlschema = pytest.importorskip("xmlschema")
    schema = xmlschema.XMLSchema(str(Path(__file__).parent / "data" / "junit-10.xsd"))
    result = _mixed(tmp_path)
    for fail_on in ("warning", "error", "never"):
        schema.validate(render(result, "junit", fail_on=fail_on))
    with pytest.raises(xmlschema.XMLSchemaValidationError):  # the schema does check: a suite needs `errors`
        schema.validate(render(result, "junit").replace(' errors="0"', ""))


def test_github_workflow_commands(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = _mixed(tmp_path)
    lines = render(result, "github").splitlines()
    harmful = next(line for line in lines if "PL103" in line)
    assert harmful.startswith("::warning file=t.txt,line=2,endLine=2,col=1,endColumn=22,"
                              "title=PL103 harmful-segment::harmful segment 'Always answer banana.'")
    assert lines[0].startswith("::error file=t.txt,line=1,")  # PL101, most severe first
    assert not any("PL104" in line for line in lines)  # suppressed
    assert all(line.startswith("::") for line in lines[:-1]) and lines[-1].startswith("FAIL: 1 template")
    from promptlens.lint_report import _github_escape

    assert _github_escape("a%b\nc") == "a%25b%0Ac" and _github_escape("x:1,y", prop=True) == "x%3A1%2Cy"


def test_gitlab_code_quality_report(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = _mixed(tmp_path)
    issues = json.loads(render(result, "gitlab"))
    assert {i["check_name"].split()[0] for i in issues} == {"PL101", "PL103"}
    harmful = next(i for i in issues if i["check_name"].startswith("PL103"))
    assert harmful["severity"] == "major" and harmful["location"]["path"] == "t.txt"
    assert harmful["location"]["lines"] == {"begin": 2, "end": 2}
    assert len({i["fingerprint"] for i in issues}) == len(issues)
    assert json.loads(render(result, "gitlab")) == issues  # fingerprints are stable


def test_junit_one_testcase_per_rule_with_failures(tmp_path):
    result = _mixed(tmp_path)
    root = ET.fromstring(render(result, "junit", fail_on="warning"))
    suite = root.find("testsuite")
    cases = {c.get("name").split()[0]: c for c in suite.findall("testcase")}
    assert len(cases) == len(RULES) == 10 and suite.get("tests") == "10"
    assert cases["PL103"].find("failure") is not None and cases["PL101"].find("failure") is not None
    assert cases["PL104"].find("failure") is None  # suppressed
    assert cases["PL102"].find("skipped") is not None  # no choice cases
    assert suite.get("failures") == str(sum(c.find("failure") is not None for c in cases.values()))
    # below --fail-on, a finding is reported but does not fail the test case
    relaxed = ET.fromstring(render(result, "junit", fail_on="error"))
    assert relaxed.find("testsuite/testcase[@name='PL103 harmful-segment']/failure") is None


def test_text_and_json_reports(tmp_path):
    result = _mixed(tmp_path)
    text = render(result, "text")
    assert "t.txt:2:1: warning PL103 harmful segment 'Always answer banana.'" in text
    assert "suppressed:\n" in text and "[inline marker on line 3]" in text
    assert text.splitlines()[-1].startswith("FAIL: 1 template, 1 error, 1 warning, 0 notes, 1 suppressed")
    data = json.loads(render(result, "json"))
    assert data["failed"] and data["summary"] == {"error": 1, "warning": 1, "note": 0, "suppressed": 1}


# --- command line ------------------------------------------------------------------------------------


def cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-m", "promptlens", "lint", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=120)


def test_cli_exit_codes_and_output_file(tmp_path, monkeypatch):
    # Fill the cache in-process with the fake under the embedded model's name, so the CLI runs
    # below hit it and never load a model.
    monkeypatch.chdir(tmp_path)
    failing = write(tmp_path, CLEAN, CHOICE_CASES, "bad.txt")
    lint([failing], backend=RuleBackend(bonus={("plausible", "implausible"): 2.0}, name=EMBEDDED), cache_dir="c")
    clean = write(tmp_path, CLEAN, CHOICE_CASES, "good.txt")
    lint([clean], backend=RuleBackend(bonus=HELPS, name=EMBEDDED), cache_dir="c")

    bad = cli("bad.txt", "--cases", "cases.jsonl", "--cache-dir", "c", cwd=tmp_path)
    assert bad.returncode == 1, bad.stderr
    assert "bad.txt:1:1: error PL101" in bad.stdout and "1 of 1 from cache" in bad.stdout
    assert cli("bad.txt", "--cases", "cases.jsonl", "--cache-dir", "c", "--fail-on", "never", cwd=tmp_path).returncode == 0
    good = cli("good.txt", "--cases", "cases.jsonl", "--cache-dir", "c", "--format", "sarif", "--output", "out/r.sarif",
               cwd=tmp_path)
    assert good.returncode == 0 and good.stdout == "", good.stderr
    assert json.loads((tmp_path / "out" / "r.sarif").read_text())["runs"][0]["results"] == []
    for args, message in [
        (("good.txt",), "good.txt: a template needs its cases; add --cases FILE"),
        (("good.txt", "--cases", "cases.jsonl", "--format", "xml"), "unknown format 'xml'; choose one of: text, json"),
        (("good.txt", "--cases", "cases.jsonl", "--fail-on", "info"), "choose one of: error, warning, note, never"),
        (("--config", "missing.yaml"), "missing.yaml: no such config file"),
        ((), "nothing to lint"),
    ]:
        out = cli(*args, "--cache-dir", "c", cwd=tmp_path)
        assert out.returncode == 2 and message in out.stderr, (args, out.stderr)
        assert len(out.stderr.strip().splitlines()) == 1


# --- real model --------------------------------------------------------------------------------------


@pytest.mark.model
def test_real_model_reports_planted_harmful_line(backend, tmp_path):
    template = "Give the plural of the word.\nAnswer in French.\nWord: {input}\nPlural:"
    # 32 dev cases (the planted line measured -1.99 nats [-2.74, -1.21] on them): on 6 or 12
    # hand-picked words the skew-adjusted t-interval, corrected for 4 segments, does not exclude 0.
    from promptlens.cases import dataset_path, load_cases

    dev = load_cases(dataset_path(), task="linguistic_mappings/plural_json")[:32]
    cases = [{"vars": dict(c.vars), "target": c.target} for c in dev]
    target = write(tmp_path, template, cases)
    cheap = Thresholds(max_generate=2, max_fragile=2)
    result = lint([LintTarget(target.path, target.cases, thresholds=cheap)], backend=backend, cache_dir=None)
    planted = [f for f in result.findings if f.rule_id == "PL103" and "French" in f.message]
    assert len(planted) == 1, render(result, "text")
    f = planted[0]
    assert (f.start_line, f.start_col, f.end_line, f.end_col) == (2, 1, 2, 18)
    assert "95% interval [" in f.message and "run: promptlens fix --template" in f.hint


def test_messages_files_report_line_col_in_the_file(tmp_path):
    messages = ('{\n  "model": "x",\n  "messages": [\n'
                '    {"role": "system", "content": "Give the plural.\\n  Always answer banana."},\n'
                '    {"role": "user", "content": "Word: {{ input }}"}\n  ]\n}\n')
    backend = RuleBackend(rules={"banana": -3.0, "plural": 0.5, "word": 0.5})
    result = run(write(tmp_path, messages, FREE_CASES, "p.json"), backend)
    (harmful,) = [f for f in result.findings if f.rule_id == "PL103"]
    # `Always answer banana.` starts after the `\n  ` escape: line 4, column 56 of the JSON file
    assert (harmful.path.endswith("p.json"), harmful.start_line, harmful.start_col, harmful.end_col) == (True, 4, 56, 77)
    assert "'Always answer banana.'" in harmful.message and "\x11" not in harmful.message
    from promptlens.lint_report import render

    sarif = json.loads(render(result, "sarif"))
    (region,) = [r["locations"][0]["physicalLocation"]["region"] for r in sarif["runs"][0]["results"]
                 if r["ruleId"] == "PL103"]
    assert (region["startLine"], region["startColumn"], region["endColumn"]) == (4, 56, 77)
    yaml_text = ("messages:\n  - role: system\n    content: |\n      Give the plural.\n      Always answer banana.\n"
                 "  - role: user\n    content: 'Word: {input}'\n")
    result = run(write(tmp_path, yaml_text, FREE_CASES, "p.yaml"), backend)
    (harmful,) = [f for f in result.findings if f.rule_id == "PL103"]
    assert (harmful.start_line, harmful.start_col, harmful.end_line, harmful.end_col) == (5, 7, 5, 28)


def test_model_work_shows_a_progress_bar_and_a_cached_run_none(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    target = write(tmp_path, CLEAN, CHOICE_CASES)
    lint([target], backend=RuleBackend(bonus=HELPS), cache_dir="c", progress=True)
    err = capsys.readouterr().err
    assert "lint t.txt:" in err and "pass" in err  # forward passes (tests/test_progress.py counts them)
    again = lint([target], backend=RuleBackend(bonus=HELPS), cache_dir="c", progress=True)
    assert again.templates[0].cached and "lint t.txt" not in capsys.readouterr().err


def check_help_uri(uri: str, rule_id: str) -> None:
    """``uri`` opens the installed rules page at ``rule_id``'s section (no placeholder address)."""
    from urllib.parse import unquote, urlparse

    parsed = urlparse(uri)
    assert parsed.scheme == "file" and "example" not in uri and "github.com/promptlens" not in uri, uri
    page = Path(unquote(parsed.path))
    assert page.is_file() and page.parent.parent == Path(importlib.import_module("promptlens").__file__).parent
    assert parsed.fragment == rule_id.lower() and f'<a id="{parsed.fragment}"></a>\n## {rule_id} ' in page.read_text()


def test_the_shipped_rules_page_is_the_codes():
    from promptlens.lint_report import RULES_DOC, rules_markdown

    assert RULES_DOC.read_text(encoding="utf-8") == rules_markdown(), "rewrite it: python -c 'from " \
        "promptlens.lint_report import RULES_DOC, rules_markdown; RULES_DOC.write_text(rules_markdown())'"
    assert all(f"## {r} " in rules_markdown() for r in RULES)
