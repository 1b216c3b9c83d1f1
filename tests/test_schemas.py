"""The JSON Schemas shipped for recipes and promptlens.yaml: every shipped file validates, their
enums are the code's, and schema and validator agree on the malformed-input corpus."""

from __future__ import annotations

import dataclasses
import json
from importlib import resources
from pathlib import Path

import pytest
import yaml

from promptlens.errors import InputError

from .helpers import write_files
from .test_cli_errors import CORPUS

jsonschema = pytest.importorskip("jsonschema")
ROOT = Path(__file__).resolve().parents[1]


def schema(name: str) -> dict:
    return json.loads((resources.files("promptlens") / "schemas" / name).read_text(encoding="utf-8"))


RECIPE, CONFIG = schema("recipe.schema.json"), schema("promptlens.schema.json")


def valid(doc: object, against: dict) -> bool:
    jsonschema.Draft7Validator.check_schema(against)
    return jsonschema.Draft7Validator(against).is_valid(doc)


def shipped(kind: str) -> list[Path]:
    if kind == "recipe":
        return sorted((ROOT / "recipes").glob("*.yaml"))
    return sorted(p for p in ROOT.rglob("promptlens.yaml") if ".git" not in p.parts)


@pytest.mark.parametrize("path", shipped("recipe"), ids=lambda p: p.name)
def test_every_shipped_recipe_validates_and_names_its_schema(path):
    from promptlens.config import load_recipe

    text = path.read_text(encoding="utf-8")
    assert valid(yaml.safe_load(text), RECIPE)
    assert text.startswith("# yaml-language-server: $schema=../promptlens/schemas/recipe.schema.json\n")
    load_recipe(path)  # and the validator takes it


@pytest.mark.parametrize("path", shipped("config"), ids=lambda p: str(p.relative_to(ROOT)))
def test_every_shipped_config_validates(path):
    from promptlens.lint import load_config

    assert valid(yaml.safe_load(path.read_text(encoding="utf-8")), CONFIG)
    load_config(path)


def test_a_config_is_shipped():
    assert shipped("config")


def test_schema_enums_are_the_codes():
    from promptlens.attribution import METHODS
    from promptlens.config import KEYS
    from promptlens.fix import STRATEGIES
    from promptlens.lint import _ENTRY_KEYS, _TOP_KEYS, RULES, SEVERITIES, Thresholds
    from promptlens.rewrites import KINDS
    from promptlens.segments import SEGMENTATIONS

    props = RECIPE["properties"]
    assert tuple(props) == KEYS
    assert tuple(props["strategy"]["enum"]) == STRATEGIES
    from promptlens.config import REPAIRABLE

    assert tuple(props["segmentation"]["enum"]) == REPAIRABLE
    assert tuple(props["rewrites"]["items"]["enum"]) == KINDS[1:]
    from promptlens.config import REPAIRABLE

    assert tuple(props["segmentation"]["enum"]) == tuple(REPAIRABLE)
    entry = CONFIG["properties"]["templates"]["items"]["properties"]
    assert tuple(CONFIG["properties"]) == ("model", "method", "templates") and set(_TOP_KEYS) == set(CONFIG["properties"])
    assert set(entry) == set(_ENTRY_KEYS)
    assert tuple(CONFIG["properties"]["method"]["enum"][:-1]) == METHODS
    assert tuple(entry["segmentation"]["enum"]) == SEGMENTATIONS
    assert tuple(entry["thresholds"]["properties"]) == tuple(f.name for f in dataclasses.fields(Thresholds))
    assert tuple(entry["severity"]["additionalProperties"]["enum"]) == SEVERITIES
    pattern = entry["severity"]["propertyNames"]["pattern"]
    assert all(jsonschema.Draft7Validator({"pattern": pattern}).is_valid(r) for r in RULES)


# Errors about something outside the file's shape (a file that is missing, a task not in the
# data, a glob matching nothing): a schema cannot see them, so it accepts those files.
NOT_SHAPE = ("no such file", "no such cases file", "no such template file", "cannot read", "not a usable path",
             "no case has task", "matches no files")

EXTRA_RECIPES = [  # (yaml text, shape ok?) beyond the corpus
    ("template: 'Q {input}'\ncases: c.jsonl\nn_train: 16.0\n", True),
    ("template: 'Q {input}'\ncases: c.jsonl\nn_train: true\n", False),
    ("template: 'Q {input}'\ncases: c.jsonl\nrewrites: []\n", False),
    ("template: 'Q {input}'\ncases: c.jsonl\nrewrites: [delete, rhyme]\n", False),
    ("template: 'Q {input}'\ncases: c.jsonl\nkeep_logprob: 'yes'\n", False),
    ("template: 'Q {input}'\ncases: c.jsonl\nsplit: 1.5\n", False),
    ("template: 'Q {input}'\ncases: c.jsonl\nalternatives: {'Q': 'R'}\n", False),
    ("template: 'Q {input}'\ncases: c.jsonl\ndataset: {task: x}\n", False),
    ("template: 'Q {input}'\ndataset: {path: d.jsonl}\n", False),
    ("template: 'Q {input}'\ncases:\n  - {vars: {input: a}, target: b, note: x}\n", False),
    ("template: 'Q {input}'\ncases:\n  - {input: a, target: '   '}\n", False),
    ("template: 'Q {input}'\ncases:\n  - {input: a, target: b}\n  - {input: c, target: d}\n", True),
    ("template: 'Q {input}'\ntemplate_file: t.txt\ncases: c.jsonl\n", False),
]
EXTRA_CONFIGS = [
    ("templates: [{path: t.txt, cases: c.jsonl, thresholds: {max_cases: 4.0}}]\n", True),
    ("templates: [{path: t.txt, cases: c.jsonl, thresholds: {accuracy: true}}]\n", False),
    ("templates: [{path: t.txt, cases: c.jsonl, severity: {PL999: error}}]\n", False),
    ("templates: [{path: t.txt, cases: c.jsonl, severity: {PL103: fatal}}]\n", False),
    ("templates: [{path: t.txt, cases: c.jsonl, suppress: [{rule: pl104, line: 0}]}]\n", False),
    ("templates: [{path: t.txt, cases: c.jsonl, suppress: [{rule: '*'}, {rule: pl104, line: 3}]}]\n", True),
    ("templates: [{path: t.txt}]\n", False),
    ("templates: []\n", False),
    ("templates: [{path: t.txt, cases: c.jsonl, segmentation: chapter}]\n", False),
    ("model: null\ntemplates: [{path: t.txt, cases: c.jsonl, task: null}]\n", True),
]


def _validator_verdict(kind: str, folder: Path, name: str) -> bool:
    """True when promptlens' own validator accepts the file's shape (it may still refuse a
    missing file or task, which no schema can see)."""
    from promptlens.config import load_recipe
    from promptlens.lint import load_config

    try:
        (load_recipe if kind == "recipe" else load_config)(folder / name)
    except InputError as exc:
        return any(s in str(exc) for s in NOT_SHAPE)
    return True


def _rows() -> list[tuple[str, str, dict[str, str | bytes | None]]]:
    rows = []
    for row_id, args, files, _ in CORPUS:
        for kind, name in (("recipe", "r.yaml"), ("config", "pl.yaml")):
            if name in files and args[0] in ("fix", "bench", "lint"):
                rows.append((row_id, kind, name, files))
    rows += [(f"extra-recipe-{i}", "recipe", "r.yaml", {"r.yaml": t}) for i, (t, _) in enumerate(EXTRA_RECIPES)]
    rows += [(f"extra-config-{i}", "config", "pl.yaml", {"pl.yaml": t}) for i, (t, _) in enumerate(EXTRA_CONFIGS)]
    return rows


@pytest.mark.parametrize("row_id, kind, name, files", _rows(), ids=[r[0] for r in _rows()])
def test_schema_and_validator_agree(row_id, kind, name, files, tmp_path):
    content = files[name]
    try:
        doc = yaml.safe_load(content.decode("utf-8") if isinstance(content, bytes) else content)
    except (UnicodeDecodeError, yaml.YAMLError):
        pytest.skip("not YAML at all: no schema applies")
    # The files the corpus row needs, plus a template and good cases the extra rows refer to.
    write_files(tmp_path, {"t.txt": "Q {input}", "c.jsonl": '{"input": "a", "target": "b"}\n'
                      '{"input": "c", "target": "d"}\n', **files})
    by_schema = valid(doc, RECIPE if kind == "recipe" else CONFIG)
    assert by_schema == _validator_verdict(kind, tmp_path, name), (row_id, doc)


def test_the_extra_rows_mean_what_they_say():
    for text, ok in EXTRA_RECIPES:
        assert valid(yaml.safe_load(text), RECIPE) is ok, text
    for text, ok in EXTRA_CONFIGS:
        assert valid(yaml.safe_load(text), CONFIG) is ok, text
