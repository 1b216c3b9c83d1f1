"""promptfoo suites: prompts and tests read from a real config (examples/promptfoo), and errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from promptlens.errors import InputError
from promptlens.promptfoo import is_promptfoo_config, load_suite
from promptlens.templates import messages_of

EXAMPLE = Path(__file__).parent.parent / "examples" / "promptfoo" / "promptfooconfig.yaml"


def test_the_shipped_example_is_read_with_positions() -> None:
    suite = load_suite(EXAMPLE)
    assert is_promptfoo_config(EXAMPLE)
    inline, chat = suite.prompts
    assert inline.text == "Give the plural of the word. Answer in French.\nWord: {word}\nPlural:"
    assert inline.location(0, inline.text.index("Answer")) == (8, 34)  # in promptfooconfig.yaml
    assert [m.role for m in messages_of(chat.text)] == ["system", "user", "assistant", "user", "assistant", "user"]
    assert chat.path.endswith("chat_prompt.json") and chat.placeholders == "double"
    assert len(suite.cases) == 14 and suite.cases[0].vars == {"word": "lot"} and suite.cases[0].target == "lots"
    assert suite.cases[-1].target == "rewards"  # icontains, as the whole expected answer
    report = "\n".join(suite.report())
    assert "14 test(s) used as cases" in report and "icontains (as the whole expected answer) 'rewards'" in report
    assert "promptfooconfig.yaml:75): assertion `javascript`: not an exact expected output" in report
    assert "test 15" in report and "`llm-rubric`" in report and "test 16" in report and "is a list" in report


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "promptfooconfig.yaml"
    path.write_text(text)
    return path


@pytest.mark.parametrize("config, message", [
    ("prompts: ['Q: {{ q }}']\ntests:\n  - assert: [{type: equals, value: a}]\n",
     r"promptfooconfig.yaml:3: test 1 has no `vars`; give the values of \{\{ q \}\}"),
    ("prompts: ['Q: {{ q }}']\ntests:\n  - vars: {q: x}\n    assert: [{type: llm-rubric, value: good}]\n",
     r"nothing promptlens can score: no test has vars and an `equals`"),
    ("prompts: ['Q: {{ q ']\ntests:\n  - vars: {q: x}\n    assert: [{type: equals, value: a}]\n",
     r"promptfooconfig.yaml:1:15: `\{\{` is never closed"),
    ("prompts: [file://gen.py]\ntests: []\n", r"no prompt promptlens can read \(prompt 1 .*prompt function"),
    ("tests: []\n", r"a promptfoo config is a mapping with `prompts:`"),
])
def test_bad_configs_are_one_line_errors(tmp_path: Path, config: str, message: str) -> None:
    with pytest.raises(InputError, match=message) as err:
        load_suite(_write(tmp_path, config))
    assert "\n" not in str(err.value)


def test_tests_file_and_default_test(tmp_path: Path) -> None:
    (tmp_path / "tests.yaml").write_text("- vars: {q: one}\n- vars: {q: two}\n  assert: [{type: equals, value: '2'}]\n")
    path = _write(tmp_path, "prompts: ['Q: {{ q }}']\ndefaultTest:\n  assert: [{type: contains, value: yes}]\n"
                            "tests: file://tests.yaml\n")
    assert any("quote it" in s for s in load_suite(path).skipped)  # `yes` unquoted is a YAML boolean
    path.write_text(path.read_text().replace("value: yes", "value: 'yes'"))
    suite = load_suite(path)
    assert [(c.vars["q"], c.target) for c in suite.cases] == [("one", "yes"), ("two", "2")]
    assert any("an `equals` already gives the target" in s for s in suite.skipped)


def test_cli_lint_names_the_config_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from promptlens.cli import main

    path = _write(tmp_path, "prompts: ['Q: {{ q }}']\ntests:\n  - assert: [{type: equals, value: a}]\n")
    assert main(["lint", str(path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "promptfooconfig.yaml:3: test 1 has no `vars`" in err[0]
