"""Files in and out: output-path checks and atomic writes (one home for both).

Every problem is one ``InputError`` that names the path and the fix.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

from .errors import InputError

__all__ = ["check_output", "write_atomic", "read_yaml_file"]


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


def read_yaml_file(path: Path, what: str, missing_hint: str) -> tuple[Any, Any]:
    """(node tree, data) of a UTF-8 YAML file, read with the safe loader only; every problem is
    one InputError naming ``file:line``. The node tree is kept for the line numbers of keys."""
    import yaml  # here, not at the top: most callers of this module write files and never read YAML

    if path.is_dir():
        raise InputError(f"{path} is a folder; give the {what} file (YAML) inside it")
    try:
        raw = path.read_bytes()
    except FileNotFoundError as exc:
        raise InputError(f"{path}: no such {what} file; {missing_hint}") from exc
    except OSError as exc:
        raise InputError(f"{path}: cannot read the {what} ({exc.strerror or exc}); check its permissions") from exc
    except ValueError as exc:  # a NUL character in the path
        raise InputError(f"{str(path)!r}: not a usable path ({exc}); check the path") from exc
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw.count(b"\n", 0, exc.start) + 1
        raise InputError(f"{path}:{line}: not UTF-8 (byte 0x{raw[exc.start]:02x} at offset {exc.start}); "
                         "save the file as UTF-8") from exc
    try:
        return yaml.compose(text, Loader=yaml.SafeLoader), yaml.safe_load(text)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = f":{mark.line + 1}" if mark is not None else ""
        raise InputError(f"{path}{line}: invalid YAML ({exc.problem}); check the indentation and quoting") from exc
    except yaml.reader.ReaderError as exc:  # a control character: not allowed anywhere in YAML
        line = text.count("\n", 0, exc.position) + 1
        code = exc.character if isinstance(exc.character, int) else ord(exc.character)
        raise InputError(f"{path}:{line}: invalid YAML (control character U+{code:04X} at offset "
                         f"{exc.position}); remove it") from exc
    except yaml.YAMLError as exc:
        raise InputError(f"{path}: invalid YAML ({' '.join(str(exc).split())}); check the indentation and quoting") from exc
