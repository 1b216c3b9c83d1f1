"""What the leader of a shared ``fix`` study hands to the other workers (``fix --join``).

Every worker of a shared study runs trials; only one needs to attribute the template, score the
original on train, decide each round and score the validation cases. The leader stores these in
the study (Optuna study attributes, so in any storage: SQLite, PostgreSQL, a journal file), and
the other workers take them instead of computing them again:

* ``inputs``: a fingerprint of what a worker was given (template, cases, model, objective and the
  settings that change the search), stored at once when the leader creates round 0's study; a
  worker given other inputs is refused (``check_inputs``) before it computes anything;
* ``setup``: the attribution of the original, its scores on the train cases and the notes made
  on them, stored once computed;
* per round, the kept edits beside the round's result;
* a template's validation scores (``validation_key``), by whichever worker is free: a follower
  scores the original while the leader attributes it, and the fixed template while the leader
  attributes that;
* ``final``: the scores of the original and the fixed template on train and validation, and the
  fixed template's attribution;
* half of the attribution cases of the original and of the fixed template (``part_key``), which a
  follower claims and attributes while the leader attributes the other half;
* every template's train scores (``SharedScores``), as each worker computes them: a combination
  one worker scored, in full or only its pruner's minibatch, costs the others no forward pass.

A worker waits for each with a bounded time (``take``) and, if it does not come, computes it
itself: the result is the same either way, only slower.

The values are JSON of promptlens' own frozen dataclasses (``encode``/``decode``); decoding
builds only the types listed in ``_TYPES``, so a study's contents cannot make it run anything.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from typing import Any, Mapping, Sequence

import optuna

from .errors import InputError
from .storage import poll_attr
from .types import Approximation, Attribution, Case, Score, Segment, SegmentAttribution, Summary

INPUTS = "inputs"
SETUP = "setup"
FINAL = "final"
EDITS = "edits"

_TYPES: dict[str, type] = {t.__name__: t for t in (Approximation, Attribution, Score, Segment, SegmentAttribution,
                                                   Summary)}


def register(cls: type) -> type:
    """Allow ``decode`` to build ``cls`` (a frozen dataclass of plain fields), e.g. ``fix.Edit``."""
    _TYPES[cls.__name__] = cls
    return cls


def encode(obj: Any) -> Any:
    """A JSON-ready form of ``obj``: dataclasses (of ``_TYPES``) and tuples are tagged, so ``decode``
    gives back an equal object."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        name = type(obj).__name__
        if _TYPES.get(name) is not type(obj):
            raise TypeError(f"{name} is not a type that workers hand over")
        return {"__type__": name, **{f.name: encode(getattr(obj, f.name)) for f in dataclasses.fields(obj)}}
    if isinstance(obj, tuple):
        return {"__tuple__": [encode(x) for x in obj]}
    if isinstance(obj, list):
        return [encode(x) for x in obj]
    if isinstance(obj, dict):
        if not all(isinstance(k, str) for k in obj):
            raise TypeError("only dicts with string keys are handed over")
        if "__type__" in obj or "__tuple__" in obj:
            raise TypeError("a dict may not use the keys __type__ or __tuple__")
        return {k: encode(v) for k, v in obj.items()}
    if obj is None or isinstance(obj, (str, int, float, bool)):
        return obj
    raise TypeError(f"cannot hand over a {type(obj).__name__}")


def decode(data: Any) -> Any:
    if isinstance(data, list):
        return [decode(x) for x in data]
    if isinstance(data, dict):
        if "__tuple__" in data:
            return tuple(decode(x) for x in data["__tuple__"])
        if "__type__" in data:
            cls = _TYPES.get(data["__type__"])
            if cls is None:
                raise ValueError(f"the study holds an unknown type {data['__type__']!r}")
            return cls(**{k: decode(v) for k, v in data.items() if k != "__type__"})
        return {k: decode(v) for k, v in data.items()}
    return data


def put(study: optuna.Study, key: str, value: Any) -> None:
    study.set_user_attr(key, json.dumps(encode(value)))


def get(study: optuna.Study, key: str) -> Any | None:
    """The value stored under ``key``, or None when there is none (yet)."""
    raw = study.user_attrs.get(key)
    return None if raw is None else decode(json.loads(raw))


def take(study: optuna.Study, key: str, *, until: float, poll: float = 0.2) -> Any | None:
    """The value another worker stores under ``key``, waiting until ``time.monotonic() >= until``;
    None when it did not come (the caller computes it itself)."""
    raw = poll_attr(study, key, until=until, poll=poll)
    return None if raw is None else decode(json.loads(str(raw)))


def part_key(template: str, what: str) -> str:
    """Where a follower claims (``what`` "claim") and stores ("attribution") the second half of a
    template's attribution cases for the leader."""
    return f"part-{what}:{digest(template)}"


def validation_key(template: str) -> str:
    """Where a template's validation scores are stored: whichever worker is free scores them."""
    return f"validation:{digest(template)}"


class SharedScores:
    """Train scores of templates shared through a study by the workers of one ``fix --join`` run
    (``study.TemplateScorer``'s ``shared``): study attribute ``train:<digest>`` holds a template's
    scores so far, case index -> Score. ``taken`` counts the cases this worker read instead of
    scoring."""

    def __init__(self, study: optuna.Study) -> None:
        self.study = study
        self.taken = 0

    def get(self, template: str) -> dict[int, Score]:
        stored = get(self.study, _scores_key(template)) or {}
        return {int(i): score for i, score in stored.items()}

    def put(self, template: str, scores: Mapping[int, Score]) -> None:
        put(self.study, _scores_key(template), {str(i): score for i, score in scores.items()})


def _scores_key(template: str) -> str:
    return f"train:{digest(template)}"


def digest(value: Any) -> str:
    """A short stable digest of a JSON-able value (dataclasses encoded as ``encode`` does)."""
    return hashlib.sha256(json.dumps(encode(value), sort_keys=True).encode()).hexdigest()[:16]


def fingerprint(template: str, train: Sequence[Case], valid: Sequence[Case], settings: Mapping[str, Any]) -> dict[str, str]:
    """Per input, a digest: two workers of one study must agree on every one."""
    def cases(cs: Sequence[Case]) -> list:
        return [[c.vars, c.target, list(c.choices or ())] for c in cs]

    return {"template": digest(template), "train cases": digest(cases(train)),
            "validation cases": digest(cases(valid)), **{k: digest(v) for k, v in settings.items()}}


def check_inputs(study: optuna.Study, mine: Mapping[str, str]) -> None:
    """Refuse to work on a study whose leader was given other inputs (InputError: exit 2)."""
    theirs = study.user_attrs.get(INPUTS)
    if theirs is None:
        return  # a study made before inputs were stored: the template check in fix still applies
    stored = json.loads(theirs)
    differ = [k for k in sorted(set(stored) | set(mine)) if stored.get(k) != mine.get(k)]
    if differ:
        raise InputError(f"study {study.study_name!r} was started with other inputs ({', '.join(differ)} differ); "
                         "give every worker the same recipe and options, or give a new --study")


def store_inputs(study: optuna.Study, mine: Mapping[str, str]) -> None:
    study.set_user_attr(INPUTS, json.dumps(dict(mine), sort_keys=True))
