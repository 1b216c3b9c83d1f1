"""One root error type. Every message names the problem *and* the fix.

The CLI turns a ``PromptLensError`` into a single line on stderr and exit code 2.
"""

from __future__ import annotations


class PromptLensError(Exception):
    """A mistake the user can fix (bad input, missing model, bad option). The message is always
    one line: a line break that comes in with a user's value (a file name, a key) is shown as
    ``\\n``, so a log or a CI annotation never splits it."""

    def __init__(self, message: object = "", *args: object) -> None:
        text = str(message).replace("\r", "\\r").replace("\n", "\\n")
        super().__init__(text, *args)


class InputError(PromptLensError):
    """A file, case, template or option that cannot be used as given."""


class ModelNotInstalledError(PromptLensError):
    """The embedded model (or a model path) is not available locally."""


class BackendError(PromptLensError):
    """A scoring backend that cannot do what was asked: a server that is unreachable, answers
    with an error, or cannot report the log-probs of prompt tokens."""


class PromptLensWarning(UserWarning):
    """Something that works but is worse than it need be (a slow dtype on this CPU); the CLI
    prints it as one ``promptlens: warning:`` line."""
