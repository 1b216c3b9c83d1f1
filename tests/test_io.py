"""promptlens.io: the one UTF-8 reader and YAML parser every input file goes through, and the
output checks. Each problem is one InputError naming the file and the fix."""

from __future__ import annotations

from pathlib import Path

import pytest

from promptlens.errors import InputError
from promptlens.io import check_output, parse_yaml, read_text, read_yaml_file


def _error(call, *args, **kwargs) -> str:
    with pytest.raises(InputError) as info:
        call(*args, **kwargs)
    message = str(info.value)
    assert "\n" not in message
    return message


def test_read_text_drops_a_bom_and_keeps_the_rest(tmp_path):
    path = tmp_path / "t.txt"
    path.write_bytes("\ufeffcaf\u00e9 {input}\r\n".encode("utf-8"))
    assert read_text(path, "template") == "caf\u00e9 {input}\r\n"


def test_read_text_messages_name_the_file_and_the_fix(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "folder.txt").mkdir()
    assert _error(read_text, "folder.txt", "prompt") == "folder.txt is a folder; give the prompt file inside it"
    assert _error(read_text, "nope.txt", "prompt") == (
        f"nope.txt: no such prompt file; check the path (relative paths start at {tmp_path})")
    assert _error(read_text, tmp_path / "nope.txt", "prompt") == f"{tmp_path / 'nope.txt'}: no such prompt file; check the path"
    assert _error(read_text, "nope.txt", "template", hint="look beside the recipe").endswith("; look beside the recipe")
    assert _error(read_text, "a\x00b.txt", "prompt") == "'a\\x00b.txt': not a usable path (embedded null byte); check the path"
    assert "cannot read the prompt file (File name too long)" in _error(read_text, "x" * 5000 + ".txt", "prompt")


def test_read_text_names_the_line_and_offset_of_a_bad_byte(tmp_path):
    path = tmp_path / "p.txt"
    path.write_bytes(b"line one\nPlural \xff\n")
    assert _error(read_text, path, "prompt", name="p.txt") == (
        "p.txt:2: not UTF-8 (byte 0xff at offset 16); save the file as UTF-8")
    path.write_bytes("input,target\n".encode("utf-16"))
    assert _error(read_text, path, "cases", name="p.txt") == "p.txt: the file is UTF-16; save the file as UTF-8"


def test_read_text_permission_denied(tmp_path, monkeypatch):
    path = tmp_path / "t.txt"
    path.write_text("x", encoding="utf-8")

    def deny(self: Path) -> bytes:
        raise PermissionError(13, "Permission denied", str(self))

    monkeypatch.setattr(Path, "read_bytes", deny)
    assert _error(read_text, path, "template", name="t.txt") == (
        "t.txt: cannot read the template file (Permission denied); check that it exists and that you may read it")


@pytest.mark.parametrize("text, message", [
    ("a: [1\n", "r.yaml:2: invalid YAML ("),
    ("a: !!python/object:os.system x\n", "only plain YAML is read"),
    ("a: 1\n---\nb: 2\n", "remove the extra '---'"),
    ("a: \x1f\n", "r.yaml:1: invalid YAML (control character U+001F at offset 3); remove it"),
    ("d: 2020-13-01\n", "quote values that YAML should keep as text"),
    ("[" * 5000 + "]" * 5000, "nested too deeply"),
])
def test_parse_yaml_errors(text, message):
    assert message in _error(parse_yaml, text, "r.yaml")


def test_parse_yaml_keeps_the_node_tree_for_lines():
    root, data = parse_yaml("a: 1\nb:\n  - x\n", "r.yaml")
    assert data == {"a": 1, "b": ["x"]}
    assert [k.start_mark.line for k, _ in root.value] == [0, 1]


def test_read_yaml_file_reads_then_parses(tmp_path):
    path = tmp_path / "r.yaml"
    path.write_bytes(b"\xef\xbb\xbftemplate: x\n")
    assert read_yaml_file(path, "recipe", "check the path")[1] == {"template": "x"}
    assert _error(read_yaml_file, tmp_path / "n.yaml", "recipe", "check the path") == (
        f"{tmp_path / 'n.yaml'}: no such recipe file; check the path")


def test_check_output(tmp_path):
    (tmp_path / "f").write_text("x", encoding="utf-8")
    assert _error(check_output, tmp_path, "report") == f"{tmp_path} is a folder; give a file name for the report"
    assert "is a file, not a folder" in _error(check_output, tmp_path / "f" / "out.json", "report")
    check_output(tmp_path / "new" / "out.json", "report")  # a folder that will be made is fine


def test_a_write_that_fails_half_way_leaves_the_old_file_and_no_temporary(tmp_path):
    from promptlens.io import write_atomic

    target = tmp_path / "fixed-template.txt"
    write_atomic(target, "the old template\n")
    with pytest.raises(UnicodeEncodeError):  # the first 100k characters are written, then it fails
        write_atomic(target, "x" * 100_000 + "\ud800")
    assert target.read_text(encoding="utf-8") == "the old template\n"
    assert [p.name for p in tmp_path.iterdir()] == ["fixed-template.txt"]
