"""promptlens.config: recipes (a template, cases and a FixConfig) load with their paths relative
to the recipe, errors name file:line and the fix; and under fuzzing (recipes and lint's config
file: any mapping, any text, a valid recipe with fuzzed keys) a recipe, or one clear error line,
never a traceback."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from promptlens.config import KEYS, load_recipe
from promptlens.errors import PromptLensError
from promptlens.lint import load_config
from promptlens.segments import template_fields

from .helpers import GOOD_JSONL, RECIPE, write_files

def test_recipe_with_dataset_relative_paths_and_alternatives(tmp_path):
    (tmp_path / "t.txt").write_text("Say yes or no. {input}", encoding="utf-8")
    (tmp_path / "r.yaml").write_text(
        "template_file: t.txt\ndataset: {task: navigate}\nn_train: 4\nn_validation: 3\n"
        "budget: {trials: 7}\nalternatives: {'Say yes or no.': ['Reply yes or no.']}\n", encoding="utf-8")
    recipe = load_recipe(tmp_path / "r.yaml")
    assert recipe.template == "Say yes or no. {input}" and recipe.trials == 7 and recipe.threshold == 0.8
    assert set(recipe.cases[0].vars) == {"input"}  # the dataset's `instruction` var is dropped
    assert recipe.alternatives == {"Say yes or no.": ["Reply yes or no."]}
    assert recipe.max_regressions is None  # no limit unless the recipe sets one


@pytest.mark.parametrize("body, message", [
    ("template: x\ncases: []\nbogus: 1\n", r"r\.yaml:3: unknown recipe key 'bogus'"),
    ("template: x\ncases: [{input: a, target: b}]\nthreshold: 2\n", r"r\.yaml:3: `threshold` is 2"),
    ("template: x\n", "give exactly one of `cases:`"),
    ("template: x\ncases: [1\n", r"r\.yaml:\d+: invalid YAML"),
    ("cases: c.jsonl\n", "exactly one of `template:`"),
    ("template: x\ndataset: {task: navigate}\nstrategy: greedy\n", r"r\.yaml:3: unknown strategy"),
    ("template: x\ncases: [{input: a, target: b}]\nkeep_logprob: maybe\n", r"r\.yaml:3: `keep_logprob` is 'maybe'; give true or false"),
    ("template: x\ncases: [{input: a, target: b}]\nmax_regressions: -1\n", r"r\.yaml:3: `max_regressions` is -1"),
])
def test_recipe_errors_name_file_line_and_fix(tmp_path, body, message):
    from promptlens.errors import InputError

    (tmp_path / "r.yaml").write_text(body, encoding="utf-8")
    with pytest.raises(InputError, match=message):
        load_recipe(tmp_path / "r.yaml")


@pytest.mark.parametrize("name", ["sports_understanding", "navigate", "plural", "entailed_polarity_quick"])
def test_shipped_recipes_load(name):
    recipe = load_recipe(Path(__file__).parent.parent / "recipes" / f"{name}.yaml")
    assert template_fields(recipe.template) == ["input"]
    assert all(set(c.vars) == {"input"} for c in recipe.cases)
    assert len(recipe.cases) >= recipe.n_train + recipe.n_validation


def test_recipe_with_a_messages_file_gives_the_flat_template_and_unit_segmentation(tmp_path):
    import json

    from promptlens.segments import segment
    from promptlens.templates import messages_of

    messages = [{"role": "system", "content": "Sort words. Answer in French."},
                {"role": "user", "content": "Words: b a"}, {"role": "assistant", "content": "a b"},
                {"role": "user", "content": "Words: {input}"}]
    (tmp_path / "p.json").write_text(json.dumps(messages), encoding="utf-8")
    (tmp_path / "r.yaml").write_text("template_file: p.json\ncases: [{input: d c, target: c d}]\nsegmentation: unit\n",
                                     encoding="utf-8")
    recipe = load_recipe(tmp_path / "r.yaml")
    assert [m.content for m in messages_of(recipe.template)] == [m["content"] for m in messages]
    assert recipe.segmentation == "unit"
    assert len([s for s in segment(recipe.template, "unit") if s.feature]) == 4  # two rules, one example, "Words: "
    # Without a segmentation key the recipe takes the default, the same unit segmentation.
    (tmp_path / "r2.yaml").write_text("template_file: p.json\ncases: [{input: d c, target: c d}]\n", encoding="utf-8")
    assert load_recipe(tmp_path / "r2.yaml").segmentation == "unit"


# --- fuzzing the config parsers -------------------------------------------------------------

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


def _only_clear_errors(parse, folder: Path, name: str, content: bytes | object) -> None:
    """Write ``content`` (bytes as they are, anything else as YAML) as ``folder/name`` beside a good
    template, cases file and recipe, and parse it: a result, or one clear error line."""
    import yaml

    write_files(folder, {"c.jsonl": GOOD_JSONL, "t.txt": "Plural of {input}:", "r.yaml": RECIPE,
                         name: content if isinstance(content, bytes) else yaml.safe_dump(content, allow_unicode=True)})
    try:
        parse(folder / name)
    except PromptLensError as exc:
        assert str(exc) and "\n" not in str(exc).strip(), str(exc)


@FUZZ
@given(data=_recipes)
def test_fuzz_recipe_mappings_give_a_recipe_or_a_clear_error(tmp_path_factory, data):
    _only_clear_errors(load_recipe, tmp_path_factory.mktemp("recipe"), "fuzz.yaml", data)


@FUZZ
@given(data=st.dictionaries(st.sampled_from(KEYS), _values, max_size=6))
def test_fuzz_valid_recipe_with_fuzzed_keys_gives_a_recipe_or_a_clear_error(tmp_path_factory, data):
    """A valid recipe with some keys replaced, so the fuzzing reaches the checks after the template's."""
    recipe = {"template": "Plural of {input}:", "cases": "c.jsonl", **data}
    _only_clear_errors(load_recipe, tmp_path_factory.mktemp("recipe"), "fuzz.yaml", recipe)


@FUZZ
@given(text=st.one_of(st.text(max_size=200), st.binary(max_size=200).map(lambda b: b.decode("latin-1")),
                      st.lists(st.sampled_from(["template: 'Q {input}'", "cases: c.jsonl", "budget:", "  trials: 3",
                                                "- a", "{", "]", "key: [1, 2", "&a x", "*a", "!!python/none",
                                                "!!binary abc", "seed: 1e999", "threshold: .nan", "---", "\t",
                                                "dataset: {task: x}", "cases: [{input: a}]"]),
                               max_size=8).map("\n".join)))
def test_fuzz_recipe_text_gives_a_recipe_or_a_clear_error(tmp_path_factory, text):
    content = text.encode("utf-8", "surrogatepass")
    _only_clear_errors(load_recipe, tmp_path_factory.mktemp("recipe"), "fuzz.yaml", content)


@FUZZ
@given(data=_lint_configs)
def test_fuzz_lint_configs_give_targets_or_a_clear_error(tmp_path_factory, data):
    _only_clear_errors(load_config, tmp_path_factory.mktemp("lint"), "promptlens.yaml", data)
