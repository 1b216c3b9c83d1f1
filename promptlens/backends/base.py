"""The scoring protocol every backend implements, and what a backend can do beyond it.

Scoring needs one method: ``token_logprobs(prompts, targets)[i][j][k]``, the teacher-forced
log-prob of token k of ``targets[i][j]`` after ``prompts[i]``. Everything else is a capability,
read with the helpers below so that callers never guess from a backend's class:

* ``supports_gradients``: the model's weights are here (Integrated Gradients needs them);
* ``supports_prompt_logprobs``: the backend can score a given target (a remote server that only
  reports log-probs of tokens it generated itself cannot, and is refused up front);
* ``can_generate``: it writes its own continuation of a prompt (``generate``);
* ``counts_tokens``: it holds the model's tokenizer and context length.

The ``supports_gradients``, ``can_generate`` and ``counts_tokens`` helpers are type guards: after
``if can_generate(backend):`` a type checker knows ``backend.generate`` exists.
"""

from __future__ import annotations

from typing import Any, Protocol, Sequence, TypeGuard, runtime_checkable

from ..errors import InputError
from ..templates import render as render_template

# Attribution methods that only need scores, not gradients: they work with every backend.
SCORE_ONLY_METHODS = ("ablation", "shapley", "lime", "kernelshap")
GRADIENT_METHODS = ("ig",)


@runtime_checkable
class Backend(Protocol):
    """What scoring needs from a model. ``token_logprobs(prompts, targets)[i][j][k]`` is the
    log-prob of token k of ``targets[i][j]`` after ``prompts[i]``, teacher-forced."""

    name: str

    def token_logprobs(self, prompts: Sequence[str], targets: Sequence[Sequence[str]]) -> list[list[list[float]]]: ...


class GeneratingBackend(Backend, Protocol):
    """A backend that writes its own greedy continuation of a prompt (``can_generate``)."""

    def generate(self, prompt: str, max_new_tokens: int = 32) -> str: ...


class TokenCountingBackend(Backend, Protocol):
    """A backend that counts tokens as its model does (``counts_tokens``)."""

    @property
    def context_length(self) -> int: ...

    def encode_prompt(self, prompt: str) -> list[int]: ...

    def encode_target(self, target: str) -> list[int]: ...


class LocalBackend(GeneratingBackend, TokenCountingBackend, Protocol):
    """A model in this process (``supports_gradients``): its weights and tokenizer are here."""

    model: Any  # a transformers causal LM (a torch.nn.Module)
    tokenizer: Any
    raw: bool

    def render(self, prompt: str) -> str: ...


class ChatPrompts:
    """Rendering and tokenization for backends that hold a tokenizer (``tokenizer``, ``raw``):
    local and remote backends share it, so both score exactly the same text and tokens.

    A prompt is a plain text (one user turn) or the flat text of a message template
    (``promptlens.templates``); ``render`` turns either into the model's chat format, so no role
    mark ever reaches the tokenizer."""

    tokenizer: Any
    raw: bool
    renders_messages = True  # templates.for_backend hands this backend flat message texts

    def render(self, prompt: str) -> str:
        """The exact text the model sees for a prompt (chat template applied unless raw)."""
        return render_template(self.tokenizer, prompt, raw=self.raw)

    def encode_prompt(self, prompt: str) -> list[int]:
        return self.tokenizer(self.render(prompt), add_special_tokens=self.raw)["input_ids"]

    def encode_target(self, target: str) -> list[int]:
        return self.tokenizer(target, add_special_tokens=False)["input_ids"]


def supports_gradients(backend: Backend) -> TypeGuard[LocalBackend]:
    """True when the model runs in this process and can be differentiated (a local model)."""
    return bool(getattr(backend, "supports_gradients", False))


def supports_prompt_logprobs(backend: Backend) -> bool:
    """True when the backend can score a target it did not generate (every local backend can)."""
    return bool(getattr(backend, "supports_prompt_logprobs", True))


def can_generate(backend: Backend) -> TypeGuard[GeneratingBackend]:
    """True when the backend writes its own continuation of a prompt (every real backend does)."""
    return callable(getattr(backend, "generate", None))


def counts_tokens(backend: Backend) -> TypeGuard[TokenCountingBackend]:
    """True when the backend knows its model's tokens and context length (a fake may not)."""
    return all(hasattr(backend, a) for a in ("context_length", "encode_prompt", "encode_target"))


def check_method(method: str, backend: Backend) -> None:
    """Refuse a gradient method on a backend without gradients, naming the methods that work."""
    if method in GRADIENT_METHODS and not supports_gradients(backend):
        raise _no_gradients(method, backend)


def local_backend(backend: Backend, method: str) -> LocalBackend:
    """``backend`` itself, as the local model that ``method`` needs, or the error ``check_method`` gives."""
    if not supports_gradients(backend):
        raise _no_gradients(method, backend)
    return backend


def _no_gradients(method: str, backend: Backend) -> InputError:
    name = getattr(backend, "name", type(backend).__name__)
    return InputError(
        f"--method {method} needs gradients of a local model, and backend {name} has none; "
        f"use one of: {', '.join(SCORE_ONLY_METHODS)} (or drop --server to score locally)"
    )
