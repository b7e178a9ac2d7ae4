"""Typed view of `params.yaml` and the locations of the lake and the artifacts.

Every stage reads its knobs from here, so Dagster and DVC run with the same values.
Sections owned by other stages (training, serving, ...) stay available untyped in `Params.sections`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import yaml

DEFAULT_PARAMS_PATH = Path("params.yaml")
LAKE_ENV = "SOP2CMD_LAKE"
ARTIFACTS_ENV = "SOP2CMD_ARTIFACTS"


@dataclass(frozen=True)
class CorpusParams:
    seed: int = 20261122
    n_records: int = 4000
    output: str = "data/raw/training_data.jsonl"
    # Cases written only with the held-out phrasing families (raw corpus format with an "id").
    heldout_records: int = 300
    heldout_output: str = "data/heldout/phrasing_families.jsonl"
    # Raw-corpus file whose inputs no generated text may copy or nearly copy (the public test examples);
    # None checks nothing.
    public_examples: str | None = None

    def __post_init__(self) -> None:
        for name in ("n_records", "heldout_records"):
            if not isinstance(getattr(self, name), int) or getattr(self, name) < 1:
                raise ValueError(f"corpus.{name} must be a positive integer, got {getattr(self, name)!r}")


@dataclass(frozen=True)
class DataParams:
    raw_dir: str = "data/raw"
    # A longer line is quarantined unparsed: no legitimate record comes near this, and json.loads of
    # a hostile multi-megabyte line would dominate the stage's time and memory.
    max_line_bytes: int = 1_000_000
    # Processes that parse a large raw corpus; 0 means one per CPU core (at most 8).
    workers: int = 1


@dataclass(frozen=True)
class AugmentParams:
    eoc_token: str = "<eoc>"
    variants: tuple[str, ...] = ("with_prefix", "without_prefix")
    weight_cap: float = 5.0
    min_train_exposure: float = 10.0
    eval_fraction: float = 0.15
    split_seed: int = 7
    # "matched": zh_* templates wrap zh samples, en_* wrap en samples; "all": every template wraps every sample.
    template_languages: str = "matched"
    templates: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Params:
    corpus: CorpusParams = field(default_factory=CorpusParams)
    data: DataParams = field(default_factory=DataParams)
    augment: AugmentParams = field(default_factory=AugmentParams)
    sections: dict[str, Any] = field(default_factory=dict)


def _build(cls: type, values: dict[str, Any] | None, section: str) -> Any:
    values = dict(values or {})
    known = {f.name for f in fields(cls)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise ValueError(f"params.yaml section '{section}': unknown keys {unknown}; known keys are {sorted(known)}")
    if "variants" in values:
        values["variants"] = tuple(values["variants"])
    return cls(**values)


def parse_params(raw: dict[str, Any]) -> Params:
    params = Params(
        corpus=_build(CorpusParams, raw.get("corpus"), "corpus"),
        data=_build(DataParams, raw.get("data"), "data"),
        augment=_build(AugmentParams, raw.get("augment"), "augment"),
        sections=dict(raw),
    )
    _check_augment(params.augment)
    return params


def _check_augment(augment: AugmentParams) -> None:
    allowed_variants = {"with_prefix", "without_prefix"}
    if not augment.variants or set(augment.variants) - allowed_variants:
        raise ValueError(
            f"augment.variants must be a non-empty subset of {sorted(allowed_variants)}, got {augment.variants}"
        )
    if augment.template_languages not in ("matched", "all"):
        raise ValueError(f"augment.template_languages must be 'matched' or 'all', got {augment.template_languages!r}")
    for name, template in augment.templates.items():
        if not name.startswith(("zh_", "en_")):
            raise ValueError(f"augment.templates: name {name!r} must start with 'zh_' or 'en_' (its language)")
        if template.count("{description}") != 1:
            raise ValueError(f"augment.templates.{name}: must contain '{{description}}' exactly once")
    for lang in ("zh", "en"):
        if not any(name.startswith(f"{lang}_") for name in augment.templates):
            raise ValueError(f"augment.templates: at least one '{lang}_' template is required")
    if not 0.0 < augment.eval_fraction < 1.0:
        raise ValueError(f"augment.eval_fraction must be in (0, 1), got {augment.eval_fraction}")
    if augment.weight_cap < 1.0:
        raise ValueError(f"augment.weight_cap must be >= 1, got {augment.weight_cap}")


def load_params(path: str | os.PathLike[str] = DEFAULT_PARAMS_PATH) -> Params:
    with open(path, encoding="utf-8") as handle:
        raw = yaml.safe_load(handle) or {}
    if not isinstance(raw, dict):
        raise ValueError(f"{path}: expected a mapping of sections at the top level")
    return parse_params(raw)


def lake_root() -> Path:
    return Path(os.environ.get(LAKE_ENV, "lake"))


def artifacts_root() -> Path:
    return Path(os.environ.get(ARTIFACTS_ENV, "artifacts"))
