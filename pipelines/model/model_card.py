"""Make a model directory explain itself to tools that know nothing of this project.

`explain_model_dir(model_dir)` writes three things beside the weights of a merged or deployed model:

- the chat template, with the system prompt the model was trained with as the default system turn:
  `tokenizer.apply_chat_template([{"role": "user", "content": text}], add_generation_prompt=True)` then
  gives exactly the ids of `pipelines.model.prompts.build_prompt_ids(tokenizer, text)`, in transformers, vLLM
  or any tool that renders the template (a caller's own system message still wins);
- `plan.schema.json`: the JSON Schema constrained decoding compiles (`pipelines.serve.constrained.decoding_schema`),
  for vLLM structured outputs or any other JSON-schema decoder;
- `README.md`: a model card written from the run itself (lineage manifest, adapter config, and the
  regression metrics when the directory is a promoted one).

Only tokenizer side files and new files are written, never the safetensors, so the weights hash the
lineage records is unchanged. Running it again replaces what it wrote (the template is never wrapped twice).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pipelines.atomic_files import write_text_atomic
from pipelines.lineage.manifest import MANIFEST_NAME

CHAT_TEMPLATE_FILE = "chat_template.jinja"
TOKENIZER_CONFIG_FILE = "tokenizer_config.json"
PLAN_SCHEMA_FILE = "plan.schema.json"
MODEL_CARD_FILE = "README.md"
ADAPTER_CONFIG_FILE = "adapter_config.json"

# The trained prefix is delimited so that it can be recognised and replaced, never stacked.
_PREFIX_START = "{#- sop2cmd: the system prompt this model was trained with is the default system turn -#}\n"
_PREFIX_END = "{#- sop2cmd: the base model's template follows -#}\n"
# Sources `pipelines.model.base_model` resolves, as the hub ids a model card's `base_model` field expects.
_HUB_IDS = {"smollm2-gguf": "HuggingFaceTB/SmolLM2-135M-Instruct"}
CAPACITY_LIMIT = "validate every plan; the grammar cannot check tip capacity across commands"


# --- chat template ---------------------------------------------------------------------------------------


def base_chat_template(template: str) -> str:
    """The template without a trained-prompt prefix this module added (unchanged if it has none)."""
    if template.startswith(_PREFIX_START) and _PREFIX_END in template:
        return template.split(_PREFIX_END, 1)[1]
    return template


def trained_chat_template(template: str, system_prompt: str) -> str:
    """`template` with `system_prompt` as the system turn whenever the messages bring none.

    The prefix only rewrites the template's inputs (`messages`, and `enable_thinking`, which the prompt
    builder always sets to false and a Qwen3 template would otherwise read as true), so whatever the base
    template renders for [system, user] it now renders for [user] alone. It prints nothing itself.
    """
    # A JSON string with only ASCII escapes is also a valid Jinja string literal with the same value.
    literal = json.dumps(system_prompt, ensure_ascii=True)
    prefix = (
        _PREFIX_START
        + "{%- if messages and messages[0]['role'] != 'system' -%}\n"
        + "{%- set messages = [{'role': 'system', 'content': " + literal + "}] + messages -%}\n"
        + "{%- endif -%}\n"
        + "{%- if enable_thinking is not defined -%}{%- set enable_thinking = false -%}{%- endif -%}\n"
        + _PREFIX_END
    )
    return prefix + base_chat_template(template)


def read_chat_template(model_dir: Path) -> str:
    """The default chat template saved with a tokenizer (chat_template.jinja, else tokenizer_config.json)."""
    model_dir = Path(model_dir)
    jinja = model_dir / CHAT_TEMPLATE_FILE
    if jinja.is_file():
        return jinja.read_text(encoding="utf-8")
    config_path = model_dir / TOKENIZER_CONFIG_FILE
    config = json.loads(config_path.read_text(encoding="utf-8")) if config_path.is_file() else {}
    template = config.get("chat_template")
    if isinstance(template, list):  # named templates: [{"name": "default", "template": ...}, ...]
        template = next((t.get("template") for t in template if t.get("name") == "default"), None)
    if not isinstance(template, str) or not template:
        raise ValueError(f"{model_dir} has no chat template ({CHAT_TEMPLATE_FILE} or chat_template in "
                         f"{TOKENIZER_CONFIG_FILE}); the prompt builder needs one")
    return template


def write_chat_template(model_dir: Path, template: str) -> None:
    """Save `template` where transformers loads it, and where older readers look for it too."""
    model_dir = Path(model_dir)
    write_text_atomic(model_dir / CHAT_TEMPLATE_FILE, template)
    config_path = model_dir / TOKENIZER_CONFIG_FILE
    if config_path.is_file():
        config = json.loads(config_path.read_text(encoding="utf-8"))
        # transformers reads chat_template.jinja first; an older copy in the config must not say otherwise.
        if isinstance(config.get("chat_template"), str):
            config["chat_template"] = template
            write_text_atomic(config_path, json.dumps(config, ensure_ascii=False, indent=2) + "\n")


# --- plan schema ---------------------------------------------------------------------------------------


def plan_schema() -> dict[str, Any]:
    """The JSON Schema `predict` decodes against (default decoding limits)."""
    from pipelines.serve.constrained import DecodingLimits, decoding_schema

    return decoding_schema(limits=DecodingLimits())


# --- model card ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class EvaluationSummary:
    """What the regression evaluation and its gate said about the model (for the card and the deploy record)."""

    gate_passed: bool
    gate_description: str = ""
    gated_slice: str = "eval"
    # observed gated-slice rates and the thresholds (min_<rate>) the gate compared them with
    gate_metadata: dict[str, Any] = field(default_factory=dict)
    # every case of the run: n_cases, json_valid_rate, catalog_valid_rate, exact_match, ...
    headline: dict[str, float] = field(default_factory=dict)
    # slice -> {"cases_evaluated": n, "json_valid_rate": r, "catalog_valid_rate": r, "exact_match": r}
    slices: dict[str, dict[str, Any]] = field(default_factory=dict)
    # exact match per (slice, phenomenon tag): rows of `pipelines.serve.phenomena.tag_score_rows`
    tag_scores: list[dict[str, Any]] = field(default_factory=list)
    constrained: bool | None = None
    results_delta_version: int | None = None
    evaluated_in_run: str | None = None

    def to_dict(self) -> dict[str, Any]:
        from dataclasses import asdict

        return asdict(self)

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> EvaluationSummary:
        known = {f for f in cls.__dataclass_fields__}
        return cls(**{key: value for key, value in values.items() if key in known})


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return "-" if value is None else str(value)


def _hub_id(source: str | None) -> str | None:
    if not source:
        return None
    if source in _HUB_IDS:
        return _HUB_IDS[source]
    # A hub id ("Qwen/Qwen3-0.6B") has exactly one slash and is not a local path.
    if source.count("/") == 1 and not source.startswith((".", "/")) and not Path(source).exists():
        return source
    return None


def _front_matter(base_source: str | None) -> str:
    lines = ["---", "library_name: transformers", "pipeline_tag: text-generation"]
    hub_id = _hub_id(base_source)
    if hub_id:
        lines += [f"base_model: {hub_id}", "base_model_relation: finetune"]
    lines += ["tags:", "- sop2cmd", "- lora", "- lab-automation", "- structured-output", "---"]
    return "\n".join(lines)


def _lora_rows(training_config: Mapping[str, Any], adapter_config: Mapping[str, Any] | None) -> list[str]:
    adapter_config = adapter_config or {}
    target_modules = adapter_config.get("target_modules") or training_config.get("lora_target_modules") or []
    rows = {
        "r": adapter_config.get("r", training_config.get("lora_r")),
        "alpha": adapter_config.get("lora_alpha", training_config.get("lora_alpha")),
        "dropout": adapter_config.get("lora_dropout", training_config.get("lora_dropout")),
        "target modules": ", ".join(sorted(target_modules)) or None,
    }
    training_keys = (
        "profile",
        "learning_rate",
        "num_train_epochs",
        "max_steps",
        "max_train_samples",
        "per_device_train_batch_size",
        "gradient_accumulation_steps",
        "max_length",
        "seed",
        "world_size",
    )
    lines = ["| LoRA | value |", "| --- | --- |"]
    lines += [f"| {name} | {_fmt(value)} |" for name, value in rows.items()]
    shown = [(key, training_config[key]) for key in training_keys if key in training_config]
    if shown:
        lines += ["", "| training | value |", "| --- | --- |"]
        lines += [f"| {key} | {_fmt(value)} |" for key, value in shown]
    return lines


def _data_rows(manifest: Mapping[str, Any]) -> list[str]:
    data = manifest.get("data") or {}
    git = manifest.get("git") or {}
    n_train = len(data.get("train_source_index") or [])
    n_eval = len(data.get("eval_source_index") or [])
    dirty = " (working tree dirty)" if git.get("dirty") else ""
    lines = [
        "| data | value |",
        "| --- | --- |",
        f"| training set | `{data.get('table', '-')}` Delta version {_fmt(data.get('delta_version'))} |",
        f"| training set content sha256 | `{_fmt(data.get('content_hash'))}` |",
        f"| source records | {n_train} train, {n_eval} eval (held out) |",
        f"| code | git commit `{_fmt(git.get('commit'))}`{dirty} |",
    ]
    for name, md5 in sorted((data.get("raw_files_md5") or {}).items()):
        lines.append(f"| raw file `{name}` | DVC md5 `{md5}` |")
    return lines


def _evaluation_section(evaluation: EvaluationSummary | None) -> list[str]:
    lines = ["## Evaluation", ""]
    if evaluation is None:
        return lines + [
            "Not evaluated yet: this directory was written when the adapter was merged. The regression metrics "
            "and the quality gate's verdict are in the card of the promoted copy "
            "(`<artifacts>/deploy/current/README.md`).",
            "",
        ]
    verdict = "passed" if evaluation.gate_passed else "FAILED"
    why = f" ({evaluation.gate_description})" if evaluation.gate_description else ""
    decodings = {True: "constrained to the catalog grammar", False: "free generation", None: "-"}
    decoding = decodings[evaluation.constrained]
    lines += [
        f"Quality gate on the `{evaluation.gated_slice}` slice (the eval split of the training set version above, "
        f"never trained on): **{verdict}**{why}.",
        f"Decoding: greedy, {decoding}.",
        "",
    ]
    gate = evaluation.gate_metadata
    gate_rates = sorted(k for k in gate if not k.startswith("min_") and f"min_{k}" in gate)
    if gate_rates:
        lines += ["| gated rate | observed | required |", "| --- | --- | --- |"]
        lines += [f"| {k} | {_fmt(gate[k])} | >= {_fmt(gate[f'min_{k}'])} |" for k in gate_rates]
        lines.append("")
    if evaluation.slices:
        lines += [
            "| slice | cases | json_valid_rate | catalog_valid_rate | exact_match |",
            "| --- | --- | --- | --- | --- |",
        ]
        for name, rates in evaluation.slices.items():
            lines.append(
                f"| {name} | {_fmt(rates.get('cases_evaluated'))} | {_fmt(rates.get('json_valid_rate'))} | "
                f"{_fmt(rates.get('catalog_valid_rate'))} | {_fmt(rates.get('exact_match'))} |"
            )
        lines.append("")
    if evaluation.headline:
        lines += ["All slices together:", "", "| metric | value |", "| --- | --- |"]
        lines += [f"| {name} | {_fmt(value)} |" for name, value in evaluation.headline.items()]
        lines.append("")
    if evaluation.tag_scores:
        from pipelines.serve.phenomena import tag_scores_from_rows, tag_scores_markdown

        tags_markdown = tag_scores_markdown(tag_scores_from_rows(evaluation.tag_scores))
        lines += ["Exact match per phenomenon tag (exact matches/cases per slice):", "", tags_markdown, ""]
    if evaluation.results_delta_version is not None:
        version = evaluation.results_delta_version
        lines += [f"Per-case results: Delta table `regression_results`, version {version}.", ""]
    return lines


# The card's usage sections (a str.format template): how to load, serve and validate the model. A file of its own:
# its snippets call `model.generate` for readers of the card, while this module generates nothing itself.
_USAGE_TEMPLATE = Path(__file__).with_name("model_card_usage.md")


def model_card_markdown(
    model_dir: Path,
    manifest: Mapping[str, Any],
    *,
    system_prompt: str,
    adapter_config: Mapping[str, Any] | None = None,
    evaluation: EvaluationSummary | None = None,
    deployment: Mapping[str, Any] | None = None,
) -> str:
    """The model card of `model_dir`, from its lineage manifest, adapter config and evaluation."""
    from data_contracts.catalog import load_catalog

    base = manifest.get("base_model") or {}
    training_config = manifest.get("training_config") or {}
    profile = manifest.get("profile") or training_config.get("profile") or "-"
    title = "sop2cmd: lab procedure text to robot commands"
    lines = [_front_matter(base.get("source")), "", f"# {title}", ""]
    base_name = _hub_id(base.get("source")) or base.get("source", "-")
    source_note = f" (source `{base.get('source')}`)" if base_name != base.get("source", "-") else ""
    lines += [
        f"LoRA fine-tune of `{base_name}`{source_note}, profile `{profile}`, merged into plain safetensors weights.",
        "",
        "| artifact | sha256 |",
        "| --- | --- |",
        f"| merged weights (`*.safetensors`) | `{_fmt(manifest.get('merged_weights_sha256'))}` |",
        f"| LoRA adapter | `{_fmt(manifest.get('adapter_sha256'))}` |",
        f"| base model weights | `{_fmt(base.get('weights_sha256'))}` |",
        "",
    ]
    if deployment:
        lines += [
            f"Promoted as deployment `{deployment.get('version')}` at {deployment.get('promoted_at')} "
            f"(Dagster run `{_fmt(deployment.get('run_id'))}`); the previous deployment was "
            f"`{_fmt(deployment.get('previous'))}`.",
            "",
        ]
    parameter_count = base.get("parameter_count")
    size = f" ({base.get('model_type')}, {parameter_count:,} parameters)" if parameter_count else ""
    lines += ["## Training", "", f"Base model: `{base.get('source', '-')}`{size}.", ""]
    lines += _lora_rows(training_config, adapter_config) + [""]
    lines += _data_rows(manifest) + [""]
    lines += [
        f"`{MANIFEST_NAME}` beside the weights records all of this; "
        f"`python -m pipelines lineage {model_dir} --verify` "
        "resolves the chain back to the raw corpus lines and recomputes every hash.",
        "",
    ]
    lines += _evaluation_section(evaluation)
    lines.append(_USAGE_TEMPLATE.read_text(encoding="utf-8").format(
        commands=", ".join(load_catalog().commands),
        capacity=CAPACITY_LIMIT[0].upper() + CAPACITY_LIMIT[1:],
        system_prompt=system_prompt,
        model_dir=model_dir,
    ))
    return "\n".join(lines)


# --- all together --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ExplainedFiles:
    chat_template: Path
    plan_schema: Path
    model_card: Path
    system_prompt: str


def _read_json(path: Path) -> dict[str, Any] | None:
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None


def explain_model_dir(
    model_dir: Path,
    *,
    manifest: Mapping[str, Any] | None = None,
    evaluation: EvaluationSummary | None = None,
    deployment: Mapping[str, Any] | None = None,
    card_path: str | Path | None = None,
) -> ExplainedFiles:
    """Write the trained chat template, `plan.schema.json` and `README.md` into `model_dir`.

    `manifest` defaults to the directory's lineage.json. `card_path` is the directory the card's commands
    name (default `model_dir`; a deployment passes its stable `current` path).
    """
    from pipelines.model.prompts import system_prompt as current_system_prompt

    model_dir = Path(model_dir)
    manifest = dict(manifest if manifest is not None else (_read_json(model_dir / MANIFEST_NAME) or {}))
    # The prompt the run trained with when its manifest recorded it; else this checkout's, which the training
    # code hash in the run's identity covers.
    prompt = manifest.get("system_prompt") or current_system_prompt()
    template = trained_chat_template(read_chat_template(model_dir), prompt)
    write_chat_template(model_dir, template)

    schema_path = model_dir / PLAN_SCHEMA_FILE
    write_text_atomic(schema_path, json.dumps(plan_schema(), ensure_ascii=False, indent=2) + "\n")

    adapter_dir = manifest.get("adapter_dir")
    adapter_config = _read_json(Path(adapter_dir) / ADAPTER_CONFIG_FILE) if adapter_dir else None
    card = model_card_markdown(
        Path(card_path) if card_path is not None else model_dir, manifest, system_prompt=prompt,
        adapter_config=adapter_config, evaluation=evaluation, deployment=deployment,
    )
    card_file = model_dir / MODEL_CARD_FILE
    write_text_atomic(card_file, card)
    return ExplainedFiles(model_dir / CHAT_TEMPLATE_FILE, schema_path, card_file, prompt)
