"""Reading, validating and splitting cases (fast tier: no model)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from promptlens.cases import (
    SUPPORTED_EXTENSIONS,
    cases_from_records,
    check_vars,
    dataset_path,
    dataset_tasks,
    load_cases,
    split_cases,
)
from promptlens.errors import InputError
from promptlens.types import Case


def write(tmp_path: Path, name: str, content: str | bytes) -> Path:
    path = tmp_path / name
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content, encoding="utf-8")
    return path


def error_of(path: Path, **kwargs: object) -> str:
    with pytest.raises(InputError) as info:
        load_cases(path, **kwargs)
    message = str(info.value)
    assert "\n" not in message, "errors are one line"
    return message


# --------------------------------------------------------------------------- formats

EXPECTED = [
    Case(vars={"input": "2+2"}, target="4", choices=("3", "4"), id="a"),
    Case(vars={"input": "capital of France", "lang": "en"}, target="Paris"),
]


def test_jsonl_all_three_forms(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "cases.jsonl",
        '{"vars": {"input": "2+2"}, "target": "4", "choices": ["3", "4"], "id": "a"}\n'
        "\n"
        '{"input": "capital of France", "lang": "en", "target": "Paris"}\n'
        '{"source": "bigbench==1.0.0", "task": "t", "instruction": "Answer.", '
        '"input": "x", "target": "y", "choices": null}\n',
    )
    assert load_cases(path) == [
        *EXPECTED,
        Case(vars={"instruction": "Answer.", "input": "x"}, target="y", choices=None),
    ]


def test_jsonl_numbers_become_text_and_crlf_is_fine(tmp_path: Path) -> None:
    path = write(
        tmp_path, "cases.jsonl", '{"vars": {"n": 3, "x": 0.5}, "target": 7, "id": 12}\r\n'
    )
    assert load_cases(path) == [Case(vars={"n": "3", "x": "0.5"}, target="7", id="12")]


def test_json_list(tmp_path: Path) -> None:
    records = [
        {"vars": {"input": "2+2"}, "target": "4", "choices": ["3", "4"], "id": "a"},
        {"input": "capital of France", "lang": "en", "target": "Paris"},
    ]
    path = write(tmp_path, "cases.json", json.dumps(records, indent=2))
    assert load_cases(path) == EXPECTED


def test_csv(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "cases.csv",
        "id,input,target,choices,lang\n"
        'a,2+2,4,3|4,\n'
        ',"capital of France",Paris,,en\n',
    )
    assert load_cases(path) == [
        Case(vars={"input": "2+2", "lang": ""}, target="4", choices=("3", "4"), id="a"),
        Case(vars={"input": "capital of France", "lang": "en"}, target="Paris"),
    ]


def test_csv_quoted_newline_and_bom(tmp_path: Path) -> None:
    path = write(tmp_path, "cases.csv", '\ufeffinput,target\n"line 1\nline 2, with comma",ok\n')
    assert load_cases(path) == [Case(vars={"input": "line 1\nline 2, with comma"}, target="ok")]


def test_yaml_list_and_cases_mapping(tmp_path: Path) -> None:
    body = (
        "- vars: {input: '2+2'}\n"
        "  target: '4'\n"
        "  choices: ['3', '4']\n"
        "  id: a\n"
        "- input: capital of France\n"
        "  lang: en\n"
        "  target: Paris\n"
    )
    assert load_cases(write(tmp_path, "cases.yaml", body)) == EXPECTED
    nested = "name: demo\ncases:\n" + "".join("  " + line + "\n" for line in body.splitlines())
    assert load_cases(write(tmp_path, "cases.yml", nested)) == EXPECTED


def test_extension_is_case_insensitive(tmp_path: Path) -> None:
    path = write(tmp_path, "CASES.JSONL", '{"input": "a", "target": "b"}\n')
    assert load_cases(path) == [Case(vars={"input": "a"}, target="b")]


def test_task_filter(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "mixed.jsonl",
        '{"task": "t1", "instruction": "", "input": "a", "target": "A"}\n'
        '{"task": "t2", "instruction": "", "input": "b", "target": "B"}\n'
        '{"task": "t1", "instruction": "", "input": "c", "target": "C"}\n',
    )
    assert [c.target for c in load_cases(path, task="t1")] == ["A", "C"]


def test_cases_from_records() -> None:
    records = [
        {"vars": {"input": "2+2"}, "target": "4", "choices": ("3", "4"), "id": "a"},
        {"input": "capital of France", "lang": "en", "target": "Paris"},
    ]
    assert cases_from_records(records) == EXPECTED


# --------------------------------------------------------------------------- errors


def test_missing_file(tmp_path: Path) -> None:
    message = error_of(tmp_path / "nope.jsonl")
    assert "nope.jsonl" in message and "no such cases file" in message and "check the path" in message


def test_directory(tmp_path: Path) -> None:
    folder = tmp_path / "cases.jsonl"
    folder.mkdir()
    message = error_of(folder)
    assert "cases.jsonl is a folder" in message and "give the cases file inside it" in message


def test_unreadable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = write(tmp_path, "cases.jsonl", '{"input": "a", "target": "b"}\n')

    def deny(self: Path) -> bytes:
        raise PermissionError(13, "Permission denied", str(self))

    monkeypatch.setattr(Path, "read_bytes", deny)
    message = error_of(path)
    assert "cases.jsonl" in message and "Permission denied" in message
    assert "you may read it" in message


def test_not_utf8_names_line_and_byte(tmp_path: Path) -> None:
    path = write(tmp_path, "cases.jsonl", b'{"input": "a", "target": "b"}\n{"input": "caf\xe9"}\n')
    message = error_of(path)
    assert message.startswith(f"{path}:2: not UTF-8 (byte 0xe9 at offset 44)")
    assert "save the file as UTF-8" in message


def test_utf16(tmp_path: Path) -> None:
    path = write(tmp_path, "cases.csv", "input,target\na,b\n".encode("utf-16"))
    assert "save the file as UTF-8" in error_of(path)


@pytest.mark.parametrize("name", ["e.jsonl", "e.json", "e.csv", "e.yaml"])
def test_empty_file(tmp_path: Path, name: str) -> None:
    message = error_of(write(tmp_path, name, "\n  \n"))
    assert name in message and "file is empty; add" in message


@pytest.mark.parametrize(
    ("name", "content"),
    [("n.json", "[]"), ("n.csv", "input,target\n"), ("n.yaml", "cases: []\n"), ("n.yml", "# x\n")],
)
def test_no_cases(tmp_path: Path, name: str, content: str) -> None:
    message = error_of(write(tmp_path, name, content))
    assert name in message and "no cases found; add" in message


def test_unknown_extension(tmp_path: Path) -> None:
    message = error_of(write(tmp_path, "cases.txt", "x"))
    assert "cases.txt" in message and "'.txt'" in message
    assert all(ext in message for ext in SUPPORTED_EXTENSIONS)


def test_jsonl_invalid_json(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "cases.jsonl",
        '{"input": "a", "target": "b"}\n\n{"input": "a" "target": "b"}\n',
    )
    assert error_of(path) == (
        f"{path}:3: invalid JSON (Expecting ',' delimiter at column 15); "
        "each line must be one JSON object"
    )


def test_jsonl_deep_nesting(tmp_path: Path) -> None:
    path = write(tmp_path, "cases.jsonl", "[" * 100_000 + "\n")
    assert f"{path}:1: invalid JSON" in error_of(path)


def test_json_invalid_and_not_a_list(tmp_path: Path) -> None:
    bad = write(tmp_path, "bad.json", '[\n  {"target": "a"},\n  {"target": }\n]')
    message = error_of(bad)
    assert f"{bad}:3: invalid JSON" in message and "list of case objects" in message
    obj = write(tmp_path, "obj.json", '{"target": "a"}')
    message = error_of(obj)
    assert "obj.json" in message and "an object (JSON)" in message and "must be a list" in message


def test_json_errors_point_at_the_item_line(tmp_path: Path) -> None:
    path = write(tmp_path, "cases.json", '[\n  {"target": "a"},\n\n  {"input": "x"}\n]')
    assert error_of(path).startswith(f"{path}:4: case has no target")


def test_yaml_invalid(tmp_path: Path) -> None:
    path = write(tmp_path, "cases.yaml", "- input: a\n  target: b\n- input: [unclosed\n")
    message = error_of(path)
    assert message.startswith(f"{path}:") and "invalid YAML" in message
    assert "check the indentation" in message


def test_yaml_bad_date_is_an_input_error(tmp_path: Path) -> None:
    # PyYAML raises ValueError (not YAMLError) building the date 2020-13-01
    path = write(tmp_path, "cases.yaml", "- input: 2020-13-01\n  target: b\n")
    assert "invalid YAML" in error_of(path)


def test_yaml_tags_are_refused(tmp_path: Path) -> None:
    path = write(tmp_path, "cases.yaml", "- !!python/object/apply:os.system ['echo hi']\n")
    message = error_of(path)
    assert message.startswith(f"{path}:1: invalid YAML") and "only plain YAML" in message


def test_yaml_wrong_shapes(tmp_path: Path) -> None:
    message = error_of(write(tmp_path, "s.yaml", "just text\n"))
    assert "s.yaml" in message and "a string (YAML)" in message and "as a list" in message
    message = error_of(write(tmp_path, "m.yaml", "input: a\ntarget: b\n"))
    assert "no `cases:` key" in message and "put the cases in a list under `cases:`" in message


def test_yaml_errors_point_at_the_item_line(tmp_path: Path) -> None:
    path = write(tmp_path, "cases.yaml", "cases:\n  - target: a\n  # note\n  - input: x\n")
    assert error_of(path).startswith(f"{path}:4: case has no target")


def test_yaml_boolean_target_says_quote_it(tmp_path: Path) -> None:
    path = write(tmp_path, "cases.yaml", "- input: a\n  target: yes\n")
    message = error_of(path)
    assert message.startswith(f"{path}:1: target is a boolean") and "quote it" in message


def test_csv_wrong_column_count(tmp_path: Path) -> None:
    path = write(tmp_path, "cases.csv", "input,target\na,b\nc,d,e\n")
    message = error_of(path)
    assert message.startswith(f"{path}:3: the row has 3 values but the header has 2 columns")
    assert "one value per column" in message


def test_csv_line_numbers_count_quoted_newlines(tmp_path: Path) -> None:
    path = write(tmp_path, "cases.csv", 'input,target\n"a\nb",x\nc,\n')
    assert error_of(path) == (
        f"{path}:4: case has no target; add a value in the 'target' column"
    )


def test_csv_header_problems(tmp_path: Path) -> None:
    message = error_of(write(tmp_path, "h.csv", "input,answer\na,b\n"))
    assert "h.csv:1:" in message and "no 'target' column" in message
    assert "include 'target'" in message
    message = error_of(write(tmp_path, "d.csv", "input,input,target\na,b,c\n"))
    assert "d.csv:1:" in message and "twice; rename one" in message
    message = error_of(write(tmp_path, "t.csv", "input,target,\na,b,\n"))
    assert "t.csv:1:" in message and "column 3 has no name" in message


def test_csv_bad_quoting(tmp_path: Path) -> None:
    path = write(tmp_path, "cases.csv", 'input,target\n"a"x,b\n')
    message = error_of(path)
    assert message.startswith(f"{path}:2: malformed CSV") and "quote values" in message


@pytest.mark.parametrize(
    ("line", "problem", "fix"),
    [
        ('["input", "target"]', "the case is a list", "each case must be an object"),
        ('{"input": "a"}', "case has no target", "add a value in the 'target' field"),
        ('{"input": "a", "target": ""}', "case has no target", "'target' field"),
        ('{"input": "a", "target": "  "}', "target is only whitespace", "give the exact output"),
        ('{"input": "a", "target": "b", "choices": "b|c"}', "choices is a string", "give a list"),
        ('{"input": "a", "target": "b", "choices": []}', "choices is empty", "list the possible"),
        ('{"input": "a", "target": "b", "choices": ["c", "d"]}', "not among the choices", "add it"),
        ('{"input": "a", "target": "b", "choices": ["b", "c", "b"]}', "listed twice", "once"),
        ('{"input": "a", "target": "b", "choices": ["b", ""]}', "choice 2 is empty", "remove it"),
        ('{"input": ["a"], "target": "b"}', "var `input` is a list", "give text"),
        ('{"vars": ["a"], "target": "b"}', "vars is a list", "give an object"),
        ('{"vars": {"a": "x"}, "input": "y", "target": "b"}', "unknown key `input`", "move it"),
        ('{"input": "a", "target": "b", "id": [1]}', "id is a list", "give a string"),
        ('{"input": NaN, "target": "b"}', "var `input` is nan", "quote it as text"),
    ],
)
def test_bad_record(tmp_path: Path, line: str, problem: str, fix: str) -> None:
    path = write(tmp_path, "cases.jsonl", '{"input": "ok", "target": "ok"}\n' + line + "\n")
    message = error_of(path)
    assert message.startswith(f"{path}:2: ")
    assert problem in message and fix in message


def test_csv_target_not_among_choices(tmp_path: Path) -> None:
    path = write(tmp_path, "cases.csv", "input,target,choices\na,b,c|d\n")
    message = error_of(path)
    assert message.startswith(f"{path}:2: the target 'b' is not among the choices")


def test_yaml_record_not_a_mapping(tmp_path: Path) -> None:
    path = write(tmp_path, "cases.yaml", "- input: a\n  target: b\n- just text\n")
    assert error_of(path).startswith(f"{path}:3: the case is a string")


def test_task_not_found_lists_tasks(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "cases.jsonl",
        '{"task": "navigate", "input": "a", "target": "b"}\n'
        '{"task": "snarks", "input": "a", "target": "b"}\n',
    )
    message = error_of(path, task="navigat")
    assert "no case has task 'navigat'" in message and "did you mean 'navigate'" in message
    assert "use one of: navigate, snarks" in message
    plain = write(tmp_path, "plain.jsonl", '{"input": "a", "target": "b"}\n')
    assert "drop the task option" in error_of(plain, task="navigate")


def test_inline_errors_name_source_and_index() -> None:
    with pytest.raises(InputError, match=r"^recipe.yaml: case 2: case has no target"):
        cases_from_records([{"input": "a", "target": "b"}, {"input": "c"}], source="recipe.yaml")
    with pytest.raises(InputError, match="no cases given"):
        cases_from_records([])
    with pytest.raises(InputError, match="must be a list of case objects"):
        cases_from_records({"input": "a", "target": "b"})  # type: ignore[arg-type]


def test_errors_chain_the_cause(tmp_path: Path) -> None:
    path = write(tmp_path, "cases.jsonl", "{oops\n")
    with pytest.raises(InputError) as info:
        load_cases(path)
    assert isinstance(info.value.__cause__, json.JSONDecodeError)


# --------------------------------------------------------------------------- split_cases


def numbered(n: int) -> list[Case]:
    return [Case(vars={"input": str(i)}, target=str(i), id=str(i)) for i in range(n)]


def test_split_is_deterministic_disjoint_and_covering() -> None:
    cases = numbered(20)
    train, valid = split_cases(cases, seed=3)
    assert (train, valid) == split_cases(cases, seed=3)
    assert (len(train), len(valid)) == (10, 10)
    ids_train, ids_valid = {c.id for c in train}, {c.id for c in valid}
    assert not ids_train & ids_valid
    assert ids_train | ids_valid == {c.id for c in cases}
    assert split_cases(cases, seed=4) != (train, valid)  # the seed matters
    assert cases == numbered(20)  # the input is not shuffled in place


def test_split_sizes() -> None:
    train, valid = split_cases(numbered(10), n_train=7)
    assert (len(train), len(valid)) == (7, 3)
    train, valid = split_cases(numbered(10), frac_train=0.8)
    assert (len(train), len(valid)) == (8, 2)
    train, valid = split_cases(numbered(2))
    assert (len(train), len(valid)) == (1, 1)


def test_split_errors() -> None:
    one = "need at least 2 cases to split; add cases or give a validation set"
    with pytest.raises(InputError, match=one):
        split_cases(numbered(1))
    full = "leaves the validation set empty; choose a train size from 1 to 4"
    with pytest.raises(InputError, match=full):
        split_cases(numbered(5), n_train=5)
    with pytest.raises(InputError, match="leaves the train set empty"):
        split_cases(numbered(5), frac_train=0.05)
    with pytest.raises(InputError, match="frac_train must be between 0 and 1"):
        split_cases(numbered(5), frac_train=1.5)


# --------------------------------------------------------------------------- check_vars


def test_check_vars() -> None:
    cases = [
        Case(vars={"input": "a"}, target="b"),
        Case(vars={"input": "a", "foo": "x"}, target="b"),
    ]
    check_vars(cases[:1], ["input"], source="cases.jsonl")
    with pytest.raises(InputError) as info:
        check_vars(cases, ["input"], source="cases.jsonl")
    assert str(info.value) == (
        "case 2 in cases.jsonl gives `foo`, which the template has no field for; "
        "add {foo} to the template or remove it"
    )
    with pytest.raises(InputError) as info:
        check_vars(cases, ["input", "question"], source="cases.jsonl")
    assert str(info.value) == (
        "case 1 in cases.jsonl has no value for template field {question}; add it to vars"
    )


def test_check_vars_allows_an_empty_unused_var() -> None:
    # the shipped dataset gives instruction "" for tasks whose instruction is in the input
    check_vars([Case(vars={"instruction": "", "input": "a"}, target="b")], ["input"], source="x")


# --------------------------------------------------------------------------- shipped dataset


def test_shipped_dataset() -> None:
    assert dataset_path().name == "bigbench_dev.jsonl"
    tasks = dataset_tasks()
    assert "navigate" in tasks and len(tasks) == 16
    cases = load_cases(dataset_path(), task="navigate")
    assert len(cases) == 150
    for case in cases:
        assert set(case.vars) == {"instruction", "input"}
        assert case.choices is not None and case.target in case.choices
    assert (dataset_path().parent / "NOTICE.md").is_file()


def test_every_shipped_record_is_a_valid_case() -> None:
    assert len(load_cases(dataset_path())) == 2380


# --------------------------------------------------------------------------- fuzz

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=4)
    | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12,
)
case_like = st.dictionaries(
    st.sampled_from(["input", "target", "choices", "id", "vars", "task", "x"]),
    json_values,
    max_size=5,
)


@st.composite
def file_contents(draw: st.DrawFn) -> tuple[str, str | bytes]:
    ext = draw(st.sampled_from([".jsonl", ".csv", ".yaml"]))
    kind = draw(st.sampled_from(["bytes", "text", "structured"]))
    if kind == "bytes":
        return ext, draw(st.binary(max_size=300))
    if kind == "text":
        alphabet = st.sampled_from(list('{}[]":,|-\n\r \t#&*!abc01targetinputchoices\'\\'))
        return ext, draw(st.text(alphabet, max_size=200) | st.text(max_size=200))
    records = draw(st.lists(case_like | json_values, max_size=4))
    if ext == ".jsonl":
        return ext, "\n".join(json.dumps(r) for r in records)
    if ext == ".yaml":
        return ext, yaml.safe_dump(records)
    cells = draw(st.lists(st.lists(st.text(max_size=6), min_size=1, max_size=4), max_size=4))
    return ext, "\n".join(",".join(row) for row in [["input", "target", "choices"], *cells])


@settings(
    max_examples=300,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],  # one file, rewritten each time
)
@given(content=file_contents())
def test_fuzz_load_cases_only_raises_input_error(
    tmp_path: Path, content: tuple[str, str | bytes]
) -> None:
    """Arbitrary bytes, text and JSON-ish structures: a list of cases or an InputError."""
    ext, data = content
    path = tmp_path / f"fuzz{ext}"
    if isinstance(data, bytes):
        path.write_bytes(data)
    else:
        path.write_text(data, encoding="utf-8", newline="")
    try:
        cases = load_cases(path)
    except InputError as exc:
        assert str(path) in str(exc) and "\n" not in str(exc)
    else:
        assert isinstance(cases, list) and cases
        assert all(isinstance(c, Case) and c.target.strip() for c in cases)
