"""``promptlens.__version__``, without importing anything heavy (the CLI's ``--version`` reads it)."""

from __future__ import annotations

import re
from importlib import metadata
from pathlib import Path


def _version() -> str:
    """The installed distribution's version; in a source checkout that was never installed, the
    version written in ``pyproject.toml`` with a ``+src`` local label, so nobody mistakes it for a
    release."""
    try:
        return metadata.version("promptlens")
    except metadata.PackageNotFoundError:
        pyproject = Path(__file__).resolve().parent.parent / "pyproject.toml"
        try:
            found = re.search(r'^version\s*=\s*"([^"]+)"', pyproject.read_text(encoding="utf-8"), re.MULTILINE)
        except OSError:
            found = None
        return f"{found.group(1)}+src" if found else "0+unknown"


__version__ = _version()
