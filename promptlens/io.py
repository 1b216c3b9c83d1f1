"""Files in and out: the one UTF-8 reader and YAML parser, output-path checks and atomic writes.

Every problem is one ``InputError`` that names the path and the fix.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

from .errors import InputError

__all__ = ["check_output", "write_atomic", "read_text", "parse_yaml", "read_yaml_file"]


def check_output(path: str | Path, what: str) -> None:
    """Raise ``InputError`` now, before any work, if ``path`` could not be written later."""
    path = Path(path)
    if path.is_dir():
        raise InputError(f"{path} is a folder; give a file name for the {what}")
    folder = path.parent
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    if not folder.is_dir():
        raise InputError(f"{path}: {folder} is a file, not a folder; give another path for the {what}")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise InputError(f"{path}: cannot write in {folder} (permission denied); give another path for the {what}")


def write_atomic(path: str | Path, text: str) -> None:
    """Write via a temporary file in the same folder and rename: never a half-written file."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    except OSError as exc:
        raise InputError(f"cannot write {path} ({exc.strerror or exc}); give a path in a folder you may write to") from exc
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def read_text(path: str | Path, what: str, *, name: str | None = None, hint: str | None = None) -> str:
    """The text of a UTF-8 file (a leading BOM, as Excel and Notepad write, dropped): the one
    reader of every input file. Every problem is one ``InputError`` naming the file (``name``, or
    the path) and the fix: a folder, a missing file (``hint`` says where to look; by default the
    folder a relative path starts at), no permission, a path with a NUL, UTF-16, or bytes that
    are not UTF-8 (with the line and the byte offset)."""
    path = Path(path)
    name = str(path) if name is None else name
    if hint is None:
        hint = "check the path" + ("" if path.is_absolute() else f" (relative paths start at {Path.cwd()})")
    try:
        if path.is_dir():  # inside the try: a name too long for the system raises here
            raise InputError(f"{name} is a folder; give the {what} file inside it")
        raw = path.read_bytes()
    except FileNotFoundError as exc:
        raise InputError(f"{name}: no such {what} file; {hint}") from exc
    except OSError as exc:
        raise InputError(f"{name}: cannot read the {what} file ({exc.strerror or exc}); "
                         "check that it exists and that you may read it") from exc
    except ValueError as exc:  # a NUL character in the path
        raise InputError(f"{name!r}: not a usable path ({exc}); check the path") from exc
    if raw.startswith((b"\xff\xfe", b"\xfe\xff")):
        raise InputError(f"{name}: the file is UTF-16; save the file as UTF-8")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw.count(b"\n", 0, exc.start) + 1
        raise InputError(f"{name}:{line}: not UTF-8 (byte 0x{raw[exc.start]:02x} at offset {exc.start}); "
                         "save the file as UTF-8") from exc
    return text.removeprefix("\ufeff")


YAML_FIX = "check the indentation, and quote values that hold ': ' or start with a symbol (or use a `|` block)"


def parse_yaml(text: str, name: str) -> tuple[Any, Any]:
    """(node tree, data) of YAML text, read with the safe loader only (no tags, no objects); every
    problem is one ``InputError`` naming ``name:line`` and the fix. The node tree is kept for the
    line numbers of keys and items."""
    import yaml  # here, not at the top: most callers of this module write files and never read YAML

    try:
        return yaml.compose(text, Loader=yaml.SafeLoader), yaml.safe_load(text)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = f":{mark.line + 1}" if mark is not None else ""
        problem = exc.problem or exc.context or "unreadable"
        raise InputError(f"{name}{line}: invalid YAML ({problem}); {_yaml_fix(problem)}") from exc
    except yaml.reader.ReaderError as exc:  # a control character: not allowed anywhere in YAML
        row = text.count("\n", 0, exc.position) + 1
        char: object = exc.character  # a code point or a one-character string, by PyYAML version
        code = char if isinstance(char, int) else ord(str(char))
        raise InputError(f"{name}:{row}: invalid YAML (control character U+{code:04X} at offset "
                         f"{exc.position}); remove it") from exc
    except RecursionError as exc:
        raise InputError(f"{name}: invalid YAML (nested too deeply); write it with less nesting") from exc
    except ValueError as exc:  # e.g. the date 2020-13-01
        raise InputError(f"{name}: invalid YAML ({_short(exc)}); quote values that YAML should keep as text") from exc
    except yaml.YAMLError as exc:
        raise InputError(f"{name}: invalid YAML ({_short(exc)}); {YAML_FIX}") from exc


def _yaml_fix(problem: str) -> str:
    if "constructor for the tag" in problem:
        return "remove the '!' tag: only plain YAML is read (yaml.safe_load)"
    if "another document" in problem:
        return "keep one YAML document (remove the extra '---')"
    return YAML_FIX


def _short(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if len(text) <= 120 else text[:117] + "..."


def read_yaml_file(path: Path, what: str, missing_hint: str) -> tuple[Any, Any]:
    """(node tree, data) of a UTF-8 YAML file (``read_text``, then ``parse_yaml``)."""
    return parse_yaml(read_text(path, what, hint=missing_hint), str(path))
