"""Typed view of `params.yaml` (the one settings tree) and the locations of the lake and the artifacts.

Every stage reads its knobs from here, so Dagster, DVC and the command line run with the same values. Each section
of params.yaml is a frozen dataclass below and `parse_params` builds them all. A key that no field reads is refused
with its dotted path (`training.profiles.default.lorra_r`), so a typo fails when the file is loaded instead of
silently training or gating with a default. The defaults here are the values params.yaml spells out.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, TypeVar

import yaml

DEFAULT_PARAMS_PATH = Path("params.yaml")
LAKE_ENV = "SOP2CMD_LAKE"
ARTIFACTS_ENV = "SOP2CMD_ARTIFACTS"
PROFILE_ENV = "SOP2CMD_PROFILE"
DEFAULT_PROFILE = "default"

Settings = TypeVar("Settings")


# --- corpus, data, augment ---------------------------------------------------------------------------------------


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
    public_examples: str | None = "data/eval/sop_examples.jsonl"

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
    variants: tuple[str, ...] = ("with_prefix", "without_prefix")
    weight_cap: float = 5.0
    min_train_exposure: float = 10.0
    eval_fraction: float = 0.04
    split_seed: int = 7
    # "matched": zh_* templates wrap zh samples, en_* wrap en samples; "all": every template wraps every sample.
    template_languages: str = "matched"
    # Required: at least one zh_ and one en_ template (params.yaml holds them; there is no sensible default).
    templates: dict[str, str] = field(default_factory=dict)


# --- training ----------------------------------------------------------------------------------------------------


EVAL_STRATEGIES = ("epoch", "steps", "end", "no")
ROW_SAMPLINGS = ("uniform", "weighted")


@dataclass(frozen=True)
class TrainConfig:
    """One training profile (`training.profiles.<name>`); a key a profile leaves out takes the default here."""

    base_model: str = "smollm2-gguf"
    num_train_epochs: float = 3.0
    max_steps: int = -1
    learning_rate: float = 2e-4
    lr_scheduler_type: str = "cosine"
    warmup_steps: float = 0.05  # < 1: fraction of the total steps
    weight_decay: float = 0.0
    per_device_train_batch_size: int = 8
    per_device_eval_batch_size: int = 16
    gradient_accumulation_steps: int = 1
    gradient_checkpointing: bool = False
    max_length: int = 512
    # Subsets keep the CPU profile inside its time budget; None = the whole split.
    max_train_samples: int | None = None
    max_eval_samples: int | None = None
    lora_r: int = 8
    lora_alpha: int = 16
    lora_dropout: float = 0.1
    lora_target_modules: list[str] = field(default_factory=lambda: ["q_proj", "k_proj", "v_proj", "o_proj"])
    train_eoc_token: bool = True
    # Loss weight per row from the augmented set's long-tail `weight` (emphasis on rows the model sees anyway).
    use_sample_weights: bool = True
    # "uniform" or "weighted": how max_train_samples rows are drawn from the train split. "weighted" draws
    # rows with probability proportional to `weight`, so rare commands are *seen* more often; a loss weight on
    # a row drawn once does little for a command the subset barely contains.
    row_sampling: str = "uniform"
    # Loss weight of the tokens where the plan is decided: each command's name, and whether the plan goes on
    # after a command or ends. Every other target token (JSON syntax, values copied from the canonical text)
    # is near-certain after a few steps, yet nearly all targets are such tokens; 1.0 weighs every token alike.
    decision_token_weight: float = 1.0
    # When the eval split's loss is computed:
    # - "epoch" or "steps" (then every eval_steps): checkpoints on the same schedule, the best one loaded at the
    #   end, early stopping;
    # - "end": once, after the last step, for a run whose last weights are the model (one pass under a decaying
    #   schedule: evaluations along the way would only cost time); checkpoints every save_steps, for resuming and
    #   for learning curves;
    # - "no": neither evaluations nor checkpoints.
    eval_strategy: str = "epoch"
    eval_steps: int | None = None
    save_steps: int | None = None
    early_stopping_patience: int = 2
    early_stopping_threshold: float = 0.0
    save_total_limit: int = 3
    logging_steps: int = 5
    seed: int = 42
    device: str = "auto"  # auto | cpu | cuda
    bf16: bool | None = None  # None: bf16 on cuda when supported; on cpu see cpu_bf16
    # bf16 autocast on a CPU with native bf16 units (AVX512-BF16 or AMX), fp32 master weights: faster training
    # there (docs/benchmarks.md). CPUs without them stay in fp32, where bf16 would be emulated and slower.
    cpu_bf16: bool = False
    # Under bf16 autocast, store the frozen weights of the LoRA target layers in bf16: autocast casts them to bf16
    # for every product anyway, so this saves the casts (docs/benchmarks.md); the merge reads the fp32 base.
    bf16_frozen_weights: bool = False
    dataloader_num_workers: int = 0
    # Throughput knobs; each gives the same loss (bench/train_throughput.py,
    # tests/pipelines/model/test_train_loss_knobs.py).
    # completion_logits_only: the lm_head and the cross-entropy run only where a label exists, not over the prompt.
    completion_logits_only: bool = True
    # shared_prefix: the prompt prefix every row of a micro-batch shares (the system prompt) runs once per micro-batch
    # and its KV cache is repeated over the rows; off under gradient checkpointing (which disables the cache).
    shared_prefix: bool = True
    group_by_length: bool = True

    def __post_init__(self) -> None:
        for name, choices in (("eval_strategy", EVAL_STRATEGIES), ("row_sampling", ROW_SAMPLINGS)):
            if getattr(self, name) not in choices:
                raise ValueError(f"{name} must be one of {choices}, got {getattr(self, name)!r}")

    @property
    def evaluates_during_training(self) -> bool:
        """Whether the Trainer evaluates along the way (and so picks the best checkpoint and may stop early)."""
        return self.eval_strategy in ("epoch", "steps")

    @classmethod
    def from_dict(cls, values: Mapping[str, Any], path: str = "", source: str = "training config") -> TrainConfig:
        return build_settings(cls, values, path, source)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class TrainingParams:
    # Which profile runs unless $SOP2CMD_PROFILE or an explicit choice (a Dagster run's config) names another.
    profile: str = DEFAULT_PROFILE
    profiles: dict[str, TrainConfig] = field(default_factory=dict)

    def resolve(self, requested: str | None = None) -> tuple[str, TrainConfig]:
        """The one choice of a training profile: `requested`, then $SOP2CMD_PROFILE, then `training.profile`."""
        name = requested or os.environ.get(PROFILE_ENV) or self.profile or DEFAULT_PROFILE
        if name not in self.profiles:
            raise ValueError(
                f"training profile {name!r} not in params.yaml training.profiles ({sorted(self.profiles)})"
            )
        return name, self.profiles[name]


# --- evaluation and its gate -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class EvalSettings:
    """The evaluation settings one training profile runs with (`eval:` with `eval.profiles.<profile>` applied)."""

    mismatched_cases: str = "data/regression/mismatched_cases.jsonl"
    heldout_cases: str = "data/heldout/phrasing_families.jsonl"
    public_cases: str = "data/eval/sop_examples.jsonl"
    batch_size: int = 32
    max_new_tokens: int = 640  # pipelines.serve.decode.MAX_PLAN_TOKENS
    constrained: bool = True
    # Coverage-guided constrained decoding (pipelines.serve.coverage).
    coverage: bool = True
    compare_unconstrained: bool = True
    # Per slice ({"eval": 250, "heldout": 12, ...}); a slice not named, or null, is evaluated whole.
    max_cases: dict[str, int | None] | None = None
    # Add this run's failures to the mismatched-cases file (off for throwaway models such as smoke).
    append_failures: bool = True
    # Bounds of the decoding grammar by name (pipelines.serve.constrained.DecodingLimits); None: its defaults.
    limits: dict[str, int] | None = None

    def __post_init__(self) -> None:
        if self.max_cases is None:
            return
        from data_contracts.tables import REGRESSION_SOURCES as slices

        if not isinstance(self.max_cases, dict):
            raise ValueError(
                f"eval.max_cases must map slice names {list(slices)} to a case count, got {self.max_cases!r}"
            )
        unknown = sorted(set(self.max_cases) - set(slices))
        if unknown:
            raise ValueError(f"eval.max_cases: unknown slices {unknown}; the slices are {list(slices)}")
        for name, limit in self.max_cases.items():
            if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 0):
                raise ValueError(f"eval.max_cases.{name} must be a count >= 0 or null, got {limit!r}")

    def decoding_config(self, constrained: bool | None = None) -> Any:
        from pipelines.serve.constrained import DecodingLimits
        from pipelines.serve.decode import DecodingConfig

        return DecodingConfig(
            max_new_tokens=self.max_new_tokens,
            batch_size=self.batch_size,
            constrained=self.constrained if constrained is None else constrained,
            coverage=self.coverage,
            limits=DecodingLimits(**(self.limits or {})),
        )


@dataclass(frozen=True)
class EvalParams(EvalSettings):
    """`eval:`: the settings of every profile, and per training profile those settings with its overrides."""

    profiles: dict[str, EvalSettings] = field(default_factory=dict)

    def for_profile(self, profile: str) -> EvalSettings:
        if profile in self.profiles:
            return self.profiles[profile]
        return EvalSettings(**{f.name: getattr(self, f.name) for f in fields(EvalSettings)})


@dataclass(frozen=True)
class GateThresholds:
    min_json_valid_rate: float = 1.0
    min_catalog_valid_rate: float = 1.0
    min_exact_match: float = 0.0

    def minimums(self) -> dict[str, float]:
        return {
            "json_valid_rate": self.min_json_valid_rate,
            "catalog_valid_rate": self.min_catalog_valid_rate,
            "exact_match": self.min_exact_match,
        }

    def failures(self, observed: dict[str, float]) -> list[str]:
        """Why the gate fails for these rates (keys as in `minimums`); empty when it passes."""
        minimums = self.minimums().items()
        return [f"{name} {observed[name]:.4f} < {low}" for name, low in minimums if observed[name] < low]


def thresholds_for(gate: Mapping[str, GateThresholds], profile: str) -> GateThresholds:
    """`gate.<profile>`; a profile without its own entry is judged by `gate.default`."""
    if profile in gate:
        return gate[profile]
    return gate.get(DEFAULT_PROFILE, GateThresholds())


# --- the whole tree ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Params:
    corpus: CorpusParams = field(default_factory=CorpusParams)
    data: DataParams = field(default_factory=DataParams)
    augment: AugmentParams = field(default_factory=AugmentParams)
    training: TrainingParams = field(default_factory=TrainingParams)
    eval: EvalParams = field(default_factory=EvalParams)
    # Blocking thresholds of the quality gate, per training profile.
    gate: dict[str, GateThresholds] = field(default_factory=dict)

    def gate_for(self, profile: str) -> GateThresholds:
        return thresholds_for(self.gate, profile)


def _dotted(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def _where(source: str, path: str) -> str:
    return f"{source} {path}" if path else source


def _mapping(values: Any, path: str, source: str = "params.yaml") -> dict[str, Any]:
    if values is None:
        return {}
    if not isinstance(values, Mapping):
        raise ValueError(f"{_where(source, path)}: expected a mapping, got {values!r}")
    return dict(values)


def check_known_keys(cls: type, values: Mapping[str, Any], path: str, source: str = "params.yaml") -> None:
    """The one unknown-key check: refuse every key of `values` that is no field of the dataclass `cls`, by the
    dotted path of the key (`path` is where `values` sits in `source`)."""
    names = sorted(f.name for f in fields(cls))
    unknown = sorted(set(values) - set(names))
    if unknown:
        dotted = ", ".join(_dotted(path, key) for key in unknown)
        raise ValueError(f"{_where(source, path)}: unknown keys {unknown} ({dotted}); known keys are {names}")


def build_settings(cls: type[Settings], values: Any, path: str, source: str = "params.yaml") -> Settings:
    """`cls` from the mapping at `path` of `source`, refusing a key it has no field for or a value it refuses."""
    values = _mapping(values, path, source)
    check_known_keys(cls, values, path, source)
    try:
        return cls(**values)
    except ValueError as error:
        raise ValueError(f"{_where(source, path)}: {error}") from error


def parse_training(values: Any, path: str = "training") -> TrainingParams:
    values = _mapping(values, path)
    check_known_keys(TrainingParams, values, path)
    profiles = _mapping(values.get("profiles"), f"{path}.profiles")
    values["profiles"] = {
        name: TrainConfig.from_dict(profile, f"{path}.profiles.{name}", source="params.yaml")
        for name, profile in profiles.items()
    }
    return TrainingParams(**values)


def _eval_settings(values: dict[str, Any], path: str) -> EvalSettings:
    if values.get("limits") is not None:
        from pipelines.serve.constrained import DecodingLimits

        check_known_keys(DecodingLimits, _mapping(values["limits"], f"{path}.limits"), f"{path}.limits")
    return EvalSettings(**values)


def parse_eval(values: Any, path: str = "eval") -> EvalParams:
    """`eval:` base values, and each `eval.profiles.<profile>` applied over them (mappings merged key by key)."""
    section = _mapping(values, path)
    check_known_keys(EvalParams, section, path)
    overrides = _mapping(section.pop("profiles", None), f"{path}.profiles")
    base = _eval_settings(section, path)
    profiles = {}
    for name, override in overrides.items():
        where = f"{path}.profiles.{name}"
        override = _mapping(override, where)
        check_known_keys(EvalSettings, override, where)
        merged = {**section, **override}
        for mapping in ("limits", "max_cases"):
            if isinstance(section.get(mapping), dict) and isinstance(override.get(mapping), dict):
                merged[mapping] = {**section[mapping], **override[mapping]}
        profiles[name] = _eval_settings(merged, where)
    return EvalParams(**asdict(base), profiles=profiles)


def parse_gate(values: Any, path: str = "gate") -> dict[str, GateThresholds]:
    return {name: build_settings(GateThresholds, v, f"{path}.{name}") for name, v in _mapping(values, path).items()}


def parse_params(raw: Mapping[str, Any]) -> Params:
    raw = _mapping(raw, "")
    check_known_keys(Params, raw, "")
    augment = _mapping(raw.get("augment"), "augment")
    if "variants" in augment:
        augment["variants"] = tuple(augment["variants"])
    params = Params(
        corpus=build_settings(CorpusParams, raw.get("corpus"), "corpus"),
        data=build_settings(DataParams, raw.get("data"), "data"),
        augment=build_settings(AugmentParams, augment, "augment"),
        training=parse_training(raw.get("training")),
        eval=parse_eval(raw.get("eval")),
        gate=parse_gate(raw.get("gate")),
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
