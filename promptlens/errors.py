"""One root error type. Every message names the problem *and* the fix.

The CLI turns a ``PromptLensError`` into a single line on stderr and exit code 2.
"""

from __future__ import annotations


class PromptLensError(Exception):
    """A mistake the user can fix (bad input, missing model, bad option)."""


class InputError(PromptLensError):
    """A file, case, template or option that cannot be used as given."""


class ModelNotInstalledError(PromptLensError):
    """The embedded model (or a model path) is not available locally."""


class BackendError(PromptLensError):
    """A scoring backend that cannot do what was asked: a server that is unreachable, answers
    with an error, or cannot report the log-probs of prompt tokens."""
