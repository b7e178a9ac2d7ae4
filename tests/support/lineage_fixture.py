"""A small trained-model lineage built with the project's real functions (no training run):

real Delta tables from the data stages, a tiny safetensors base model, a LoRA adapter saved by peft,
the manifest from pipelines.lineage.manifest and the merged model from pipelines.model.merge.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path

from pipelines.atomic_files import write_json_atomic
from pipelines.config import load_params
from pipelines.data.lake import AUGMENTED_TABLE, read_table, table_path
from pipelines.data.stages import run_augment_stage, run_normalize_stage, run_raw_stage
from pipelines.lineage.manifest import MANIFEST_NAME, build_manifest, data_lineage, sha256_weights
from tests.helpers import REPO_ROOT

EXAMPLES = REPO_ROOT / "tests" / "fixtures" / "sop_examples.jsonl"


@dataclass
class TrainedLineage:
    raw_dir: Path
    lake: Path
    base_dir: Path
    adapter_dir: Path
    merged_dir: Path
    manifest: dict


def run_data_stages(raw_dir: Path, lake: Path) -> int:
    params = load_params(REPO_ROOT / "params.yaml")
    run_raw_stage(raw_dir, lake, params.data)
    run_normalize_stage(lake)
    return run_augment_stage(lake, params.augment).augmented_version


def build_trained_lineage(root: Path) -> TrainedLineage:
    from peft import LoraConfig, get_peft_model

    from pipelines.model.merge import merge_adapter
    from pipelines.model.model_io import load_causal_lm
    from pipelines.model.tiny_model import build_tiny_model

    lines = EXAMPLES.read_text(encoding="utf-8").splitlines(keepends=True)
    raw_dir = root / "raw"
    raw_dir.mkdir(parents=True)
    (raw_dir / "a.jsonl").write_text("".join(lines[:12]), encoding="utf-8")
    (raw_dir / "b.jsonl").write_text("".join(lines[12:]), encoding="utf-8")
    lake = root / "lake"
    version = run_data_stages(raw_dir, lake)
    frame = read_table(table_path(lake, AUGMENTED_TABLE), version=version)
    lineage = data_lineage(frame, AUGMENTED_TABLE, version, raw_dir)

    base_dir = build_tiny_model(root / "base")
    adapter_dir = root / "run" / "adapter"
    model = get_peft_model(
        load_causal_lm(base_dir),
        LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"], init_lora_weights=False),
    )
    model.save_pretrained(str(adapter_dir), safe_serialization=True)
    manifest = build_manifest(
        kind="lora_checkpoint",
        data=lineage,
        training_config={"profile": "test", "learning_rate": 2e-4, "lora_r": 4},
        base_model={"source": "tiny-random", "weights_sha256": sha256_weights(base_dir)},
        extra={"adapter_sha256": sha256_weights(adapter_dir)},
    )
    write_json_atomic(adapter_dir / MANIFEST_NAME, manifest)
    merged = merge_adapter(
        base_dir, adapter_dir, root / "merged",
        {**manifest, "adapter_dir": str(adapter_dir), "base_model_dir": str(base_dir)},
    )
    return TrainedLineage(raw_dir, lake, base_dir, adapter_dir, merged.merged_dir, merged.manifest)


def copy_lineage(source: TrainedLineage, root: Path) -> TrainedLineage:
    """A private copy (paths in the manifests rewritten) that a test may tamper with."""
    for name in ("raw", "lake", "base", "run", "merged"):
        shutil.copytree(source.raw_dir.parent / name, root / name)
    adapter_dir, base_dir, merged_dir = root / "run" / "adapter", root / "base", root / "merged"
    manifest = {**source.manifest, "adapter_dir": str(adapter_dir), "base_model_dir": str(base_dir)}
    (merged_dir / MANIFEST_NAME).write_text(json.dumps(manifest), encoding="utf-8")
    return TrainedLineage(root / "raw", root / "lake", base_dir, adapter_dir, merged_dir, manifest)
