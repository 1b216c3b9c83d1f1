"""One way to name a job's input: attribute, fix, lint and bench take a recipe, a template with
--cases, or a promptlens.yaml, with the same flags and the same messages; `promptlens init`
writes a config and a recipe that every job takes."""

from __future__ import annotations

import importlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from promptlens.cli import main
from tests.fakes import FakeBackend, JaccardSimilarity
from tests.rule_backend import RuleBackend

ROOT = Path(__file__).resolve().parents[1]
TEMPLATE = "Is it plausible or implausible?\nStatement: {input}\nAnswer with one word.\n"
CASES = [{"vars": {"input": f"statement {i}"}, "target": "plausible" if i % 2 else "implausible",
          "choices": ["plausible", "implausible"]} for i in range(8)]
COMMANDS = ("attribute", "fix", "lint", "bench")


class Captured(Exception):
    """Raised by a job stand-in: what the command line handed the library."""

    def __init__(self, template: str, cases: list) -> None:
        super().__init__("captured")
        self.template, self.targets = template, [c.target for c in cases]


def capture(monkeypatch: pytest.MonkeyPatch, command: str) -> None:
    """Replace the job ``command`` runs with one that raises what it was given (no model)."""
    if command == "attribute":
        def job(prompt, target=None, *, cases=None, **_):
            raise Captured(prompt, cases)
        monkeypatch.setattr(importlib.import_module("promptlens.attribution"), "attribute", job)
    elif command == "fix":
        def job(template, cases, config=None, **_):
            raise Captured(template, list(cases) + list(_.get("validation") or []))
        monkeypatch.setattr(importlib.import_module("promptlens.fix"), "fix", job)
    elif command == "bench":
        def job(prompts, cases, config=None, **_):
            raise Captured(prompts["original"], cases)
        monkeypatch.setattr(importlib.import_module("promptlens.bench"), "bench", job)
    else:
        def job(targets, config=None, **_):
            (t,) = targets
            from promptlens.cases import load_cases

            cases = list(t.inline_cases) if t.inline_cases is not None else load_cases(t.cases, task=t.task)
            text = t.template.text if t.template is not None else t.path.read_text(encoding="utf-8")
            raise Captured(text, cases)
        monkeypatch.setattr(importlib.import_module("promptlens.cli.lint"), "lint", job)
    import promptlens.cli.common as common

    monkeypatch.setattr(common, "make_backend", lambda args: FakeBackend())


@pytest.fixture
def project(tmp_path, monkeypatch):
    """A folder with a template, its cases, a recipe naming them and a promptlens.yaml."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "t.txt").write_text(TEMPLATE, encoding="utf-8")
    (tmp_path / "cases.jsonl").write_text("".join(json.dumps(c) + "\n" for c in CASES), encoding="utf-8")
    (tmp_path / "r.yaml").write_text("template_file: t.txt\ncases: cases.jsonl\nn_train: 4\n", encoding="utf-8")
    (tmp_path / "inline.yaml").write_text(f"template: {json.dumps(TEMPLATE)}\ncases: cases.jsonl\nn_train: 4\n",
                                          encoding="utf-8")
    (tmp_path / "promptlens.yaml").write_text("templates:\n  - {path: t.txt, cases: cases.jsonl}\n", encoding="utf-8")
    return tmp_path


FORMS = {
    "recipe": ["r.yaml"],
    "recipe, inline template": ["inline.yaml"],
    "template --cases": ["t.txt", "--cases", "cases.jsonl"],
    "--template --cases": ["--template", "t.txt", "--cases", "cases.jsonl"],
    "config": ["promptlens.yaml"],
    "--config": ["--config", "promptlens.yaml"],
    "default config": [],
}


@pytest.mark.parametrize("command", COMMANDS)
@pytest.mark.parametrize("form", FORMS, ids=str)
def test_every_job_takes_every_form_of_input(project, monkeypatch, command, form):
    capture(monkeypatch, command)
    with pytest.raises(Captured) as got:
        main([command, *FORMS[form], "--out", "o"] if command in ("fix", "bench") else [command, *FORMS[form]])
    assert got.value.template == TEMPLATE
    everything = [c["target"] for c in CASES]
    if command == "bench" and form.startswith("recipe"):  # a recipe: its validation cases, held out from fix
        assert len(got.value.targets) == 4
    else:
        assert sorted(got.value.targets) == sorted(everything)


@pytest.mark.parametrize("command", COMMANDS)
def test_cases_flag_replaces_a_recipes_cases(project, monkeypatch, command):
    capture(monkeypatch, command)
    (project / "six.jsonl").write_text("".join(json.dumps(c) + "\n" for c in CASES[:6]), encoding="utf-8")
    with pytest.raises(Captured) as got:
        main([command, "r.yaml", "--cases", "six.jsonl"])
    assert sorted(got.value.targets) == sorted(c["target"] for c in CASES[:6])  # bench: a file is scored whole


def errors(command: str) -> list[tuple[list[str], str]]:
    """(arguments, the message every job gives for them)."""
    return [
        (["t.txt"], "t.txt: a template needs its cases; add --cases FILE, or give a recipe or a promptlens.yaml "
                    "(`promptlens init t.txt --cases FILE` writes both)"),
        (["r.yaml", "--config", "promptlens.yaml"], "give INPUT or --config promptlens.yaml, not both"),
        (["r.yaml", "--task", "x"], "--task selects records of a --cases file; give --cases too"),
        (["bad.yaml"], "bad.yaml:2: unknown recipe key 'trails'"),
        (["missing.txt", "--cases", "cases.jsonl"], "missing.txt: no such template file; check the path"),
    ]


@pytest.mark.parametrize("command", COMMANDS)
def test_bad_input_is_one_line_naming_the_fix_and_exit_2(project, capsys, command):
    (project / "bad.yaml").write_text("template_file: t.txt\ntrails: 3\ncases: cases.jsonl\n", encoding="utf-8")
    for args, message in errors(command):
        assert main([command, *args]) == 2, args
        err = capsys.readouterr().err
        assert message in err and len(err.strip().splitlines()) == 1, (args, err)
    os.remove("promptlens.yaml")
    assert main([command]) == 2
    assert f"nothing to {command}: give a recipe, TEMPLATE --cases FILE, or a promptlens.yaml" in capsys.readouterr().err


@pytest.mark.parametrize("command", ("attribute", "fix", "bench"))
def test_one_template_jobs_refuse_a_config_with_several(project, capsys, command):
    (project / "u.txt").write_text(TEMPLATE.replace("one word", "a word"), encoding="utf-8")
    (project / "promptlens.yaml").write_text("templates:\n  - {path: '*.txt', cases: cases.jsonl}\n")
    assert main([command]) == 2
    assert (f"promptlens.yaml names 2 templates (t.txt, u.txt); {command} works on one: give TEMPLATE --cases "
            "FILE or a recipe (lint checks them all)") in capsys.readouterr().err


@pytest.mark.parametrize("command", COMMANDS)
def test_bad_input_has_no_traceback_from_the_command_line(project, command):
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(ROOT)}
    out = subprocess.run([sys.executable, "-m", "promptlens", command, "t.txt"], capture_output=True, text=True,
                         cwd=project, env=env, timeout=300)
    assert out.returncode == 2 and "Traceback" not in out.stderr
    assert out.stderr.strip().splitlines() == [
        "promptlens: error: t.txt: a template needs its cases; add --cases FILE, or give a recipe or a "
        "promptlens.yaml (`promptlens init t.txt --cases FILE` writes both)"]


def test_lint_reports_a_recipes_inline_template_at_its_lines_in_the_recipe(project, monkeypatch, capsys):
    import promptlens.backends.hf as hf

    (project / "inline.yaml").write_text("# a comment\ntemplate: |-\n  Is it plausible or implausible?\n"
                                         "  Statement: {input} {extra}\ncases: cases.jsonl\n", encoding="utf-8")
    monkeypatch.setattr(hf, "load_backend", lambda *a, **k: RuleBackend())
    assert main(["lint", "inline.yaml", "--no-cache", "--format", "json"]) == 1
    (finding,) = [f for t in json.loads(capsys.readouterr().out)["templates"] for f in t["findings"]
                  if f["rule_id"] == "PL001"]
    assert finding["path"] == "inline.yaml" and (finding["start_line"], finding["start_col"]) == (4, 22)  # the `{` of {extra}


# --- promptlens init --------------------------------------------------------------------------


def schema(name: str) -> dict:
    return json.loads((ROOT / "promptlens" / "schemas" / name).read_text(encoding="utf-8"))


def test_init_writes_a_config_and_a_recipe_valid_against_the_schemas(project, capsys):
    jsonschema = pytest.importorskip("jsonschema")
    os.remove("promptlens.yaml")
    (project / "prompts").mkdir()
    os.rename("t.txt", "prompts/t.txt")
    assert main(["init", "prompts/t.txt", "--cases", "cases.jsonl", "--recipe", "recipes/t.yaml"]) == 0
    assert "wrote promptlens.yaml" in capsys.readouterr().out
    for path, name in (("promptlens.yaml", "promptlens.schema.json"), ("recipes/t.yaml", "recipe.schema.json")):
        text = Path(path).read_text(encoding="utf-8")
        first = text.splitlines()[0]
        assert first.startswith("# yaml-language-server: $schema=") and first.endswith(name)
        assert (Path(path).parent / first.split("=", 1)[1]).resolve() == (ROOT / "promptlens" / "schemas" / name)
        jsonschema.Draft7Validator(schema(name)).validate(yaml.safe_load(text))
        assert sum(line.lstrip().startswith("#") for line in text.splitlines()) >= 4  # commented
    assert yaml.safe_load(Path("recipes/t.yaml").read_text())["template_file"] == "../prompts/t.txt"
    # a dataset-schema cases file with --task: the recipe names it as a dataset, the config as cases + task
    assert main(["init", "prompts/t.txt", "--cases", "cases.jsonl", "--task", "x", "--config", "c2.yaml",
                 "--recipe", "r2.yaml"]) == 2  # no record has task x: refused before anything is written
    assert not Path("c2.yaml").exists() and not Path("r2.yaml").exists()


def test_init_refuses_to_overwrite_without_force(project, capsys):
    before = Path("promptlens.yaml").read_text()
    assert main(["init", "t.txt", "--cases", "cases.jsonl"]) == 2
    err = capsys.readouterr().err
    assert err.strip() == ("promptlens: error: promptlens.yaml exists; keep it, or add --force to overwrite it "
                           "(or write the config elsewhere with --config FILE)")
    assert Path("promptlens.yaml").read_text() == before and not Path("recipe.yaml").exists()
    assert main(["init", "t.txt", "--cases", "cases.jsonl", "--force"]) == 0
    assert Path("promptlens.yaml").read_text() != before and Path("recipe.yaml").is_file()
    assert main(["init", "t.txt", "--cases", "nope.jsonl", "--force", "--config", "x.yaml"]) == 2
    assert "nope.jsonl" in capsys.readouterr().err and not Path("x.yaml").exists()


def test_what_init_writes_lints_and_fixes(project, monkeypatch, capsys):
    import promptlens.backends.hf as hf

    os.remove("promptlens.yaml")
    assert main(["init", "t.txt", "--cases", "cases.jsonl"]) == 0
    wrong = {(c["vars"]["input"].split()[-1], ({"plausible", "implausible"} - {c["target"]}).pop()): 2.0 for c in CASES}
    monkeypatch.setattr(hf, "load_backend", lambda *a, **k: RuleBackend(bonus=wrong))  # every case wrong: PL101
    capsys.readouterr()
    for args in (["lint"], ["lint", "recipe.yaml"]):
        assert main([*args, "--no-cache", "--format", "json"]) in (0, 1)
        report = json.loads(capsys.readouterr().out)
        assert [t["path"] for t in report["templates"]] == ["t.txt"] and report["templates"][0]["n_cases"] == 8
        hints = {f["hint"] for f in report["templates"][0]["findings"] if f["hint"].startswith("run:")}
        assert hints == {"run: promptlens fix recipe.yaml" if args[1:] else
                         "run: promptlens fix --template t.txt --cases cases.jsonl"}, hints
    monkeypatch.setattr(hf, "load_backend", lambda *a, **k: FakeBackend())
    monkeypatch.setattr(importlib.import_module("promptlens.fix"), "Similarity", JaccardSimilarity)
    assert main(["fix", "recipe.yaml", "--trials", "2", "--out", "out"]) == 0
    assert (project / "out" / "fixed-template.txt").is_file()


@pytest.mark.model
def test_init_then_lint_on_the_real_model(tmp_path):
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "2"}
    (tmp_path / "t.txt").write_text(TEMPLATE, encoding="utf-8")
    (tmp_path / "cases.jsonl").write_text("".join(json.dumps(c) + "\n" for c in CASES[:4]), encoding="utf-8")

    def run(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "promptlens", *args], capture_output=True, text=True,
                              cwd=tmp_path, env=env, timeout=900)

    assert run("init", "t.txt", "--cases", "cases.jsonl").returncode == 0
    out = run("lint", "--format", "json", "--no-cache")
    assert out.returncode in (0, 1), out.stderr
    (template,) = json.loads(out.stdout)["templates"]
    assert template["path"] == "t.txt" and template["n_cases"] == 4 and "PL101" not in template["skipped"]
    again = run("lint", "recipe.yaml", "--format", "json", "--no-cache")
    (from_recipe,) = json.loads(again.stdout)["templates"]
    assert again.returncode == out.returncode and from_recipe["n_cases"] == 4

    def same(findings: list[dict]) -> list[dict]:  # the hint names the input: fix the recipe, or TEMPLATE --cases
        return [{k: v for k, v in f.items() if k != "hint"} for f in findings]

    assert same(from_recipe["findings"]) == same(template["findings"]) and template["findings"]
    assert {f["hint"] for f in from_recipe["findings"] if f["hint"].startswith("run:")} <= \
        {"run: promptlens fix recipe.yaml"}
