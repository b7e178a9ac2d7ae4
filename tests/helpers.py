"""Plain helpers shared by the suite (fixtures live in conftest.py): paths, corpora, subprocesses, asset resources."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import dagster as dg
import pandas as pd
import pytest
import yaml

from pipelines.config import TrainConfig
from pipelines.model.plan_layout import render_plan

REPO_ROOT = Path(__file__).resolve().parents[1]
PARAMS_PATH = REPO_ROOT / "params.yaml"
FIXTURES = REPO_ROOT / "tests" / "fixtures"
WORKERS = REPO_ROOT / "tests" / "support" / "workers"
# The 20 public gold examples, from the copy in tests/fixtures (the project never reads ../shared at run time).
EXAMPLES_PATH = FIXTURES / "sop_examples.jsonl"


# --- corpora and records -----------------------------------------------------------------------------------------

def jsonl_bytes(records: Sequence[dict]) -> bytes:
    return "".join(json.dumps(record, ensure_ascii=False) + "\n" for record in records).encode("utf-8")


def write_jsonl(path: Path, records: list[dict]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(jsonl_bytes(records))
    return path


def raw_record(input_text: str, output_text: str) -> dict:
    return {"conversation": [{"input": input_text, "output": output_text}]}


def sample_record(i: int) -> dict:
    """A distinct one-line raw record per i (for corpora whose content does not matter, only their files)."""
    well = f"A{i % 12 + 1}"
    return raw_record(
        f"行1:用通道1从样品板{well}吸取{10 + i}ul",
        f"GetDiti(ditiType='50ul', channels=[1])\nAspirate(channels=[1], wells=['{well}'], volumes=[{10 + i}])",
    )


def load_examples() -> list[dict]:
    with EXAMPLES_PATH.open(encoding="utf-8") as handle:
        return [json.loads(line) for line in handle if line.strip()]


EXAMPLES = load_examples()
EXAMPLE_IDS = [example["id"] for example in EXAMPLES]


def gold_text(example: dict) -> str:
    return example["conversation"][0]["output"]


# --- a small augmented set and a smoke training config --------------------------------------------------------

_SAMPLES = [
    ("行1:用通道1从样品板A1吸取20ul",
     [("Aspirate", {"channels": [1], "labware": "样品板", "wells": ["A1"], "vols": [20]})]),
    ("用通道1-2安装50ul枪头", [("GetDiti", {"ditiType": "50ul", "channels": [1, 2]})]),
    ("弃去通道1的枪头", [("DropDiti", {"channels": [1]})]),
    ("程序暂停3分钟", [("Delay", {"seconds": 180})]),
    ("Draw 12 ul from Src_Plate B1 with channel 2",
     [("Aspirate", {"channels": [2], "labware": "Src_Plate", "wells": ["B1"], "vols": [12]})]),
    ("Pick up 200ul tips on channel 3", [("GetDiti", {"ditiType": "200ul", "channels": [3]})]),
    ("Wait 2 minutes", [("Delay", {"seconds": 120})]),
    ("Shake Plate1 at 700 rpm for 1 minute", [("Shake", {"labware": "Plate1", "rpm": 700, "seconds": 60})]),
    ("摇板：反应板A，500转每分钟，持续2分钟", [("Shake", {"labware": "反应板A", "rpm": 500, "seconds": 120})]),
    ("Drop the tips of channel 4", [("DropDiti", {"channels": [4]})]),
]
EVAL_COUNT = 3


def completion_for(commands: list[tuple[str, dict]]) -> str:
    payload = {"commands": [{"func_name": name, "func_parameters": params} for name, params in commands]}
    return json.dumps(payload, ensure_ascii=False) + "<eoc>"


def make_augmented_frame() -> pd.DataFrame:
    rows = []
    for index, (description, commands) in enumerate(_SAMPLES):
        rows.append({
            "sample_id": f"s{index:03d}",
            "source_index": f"src{index:03d}",
            "template": "zh_direct" if not description.isascii() else "en_direct",
            "variant": "without_prefix",
            "prompt": description,
            "completion": completion_for(commands),
            "command_names": [name for name, _ in commands],
            "weight": 1.0 + (index % 3),
            "split": "eval" if index >= len(_SAMPLES) - EVAL_COUNT else "train",
        })
    return pd.DataFrame(rows)


def smoke_config(**overrides: Any) -> TrainConfig:
    values: dict[str, Any] = dict(
        base_model="tiny",
        num_train_epochs=2,
        learning_rate=5e-3,
        warmup_steps=0,
        lr_scheduler_type="constant",
        per_device_train_batch_size=4,
        per_device_eval_batch_size=4,
        max_length=512,
        logging_steps=1,
        early_stopping_patience=3,
        device="cpu",
    )
    values.update(overrides)
    return TrainConfig(**values)


# --- params and Dagster resources over temporary folders ------------------------------------------------------

def write_params(path: Path, edit: Callable[[dict], None]) -> Path:
    """params.yaml with `edit` applied to its parsed content, written to `path`."""
    params = yaml.safe_load(PARAMS_PATH.read_text(encoding="utf-8"))
    edit(params)
    path.write_text(yaml.safe_dump(params, allow_unicode=True), encoding="utf-8")
    return path


def user_workdir(root: Path) -> Path:
    """A working dir like a user's checkout under `root`: params.yaml and the public examples as the raw corpus."""
    work = root / "work"
    (work / "data" / "raw").mkdir(parents=True)
    shutil.copy(PARAMS_PATH, work / "params.yaml")
    shutil.copy(EXAMPLES_PATH, work / "data" / "raw" / "examples.jsonl")
    return work


def asset_resources(tmp_path: Path, lake: Path, params_path: Path) -> dict[str, dg.ConfigurableResource]:
    from assets.resources import ArtifactsResource, LakeResource, ParamsResource

    return {
        "lake": LakeResource(root=str(lake)),
        "artifacts": ArtifactsResource(root=str(tmp_path / "artifacts")),
        "params": ParamsResource(path=str(params_path)),
    }


# --- subprocesses, ports, binaries, checkouts -----------------------------------------------------------------

def subprocess_env(**extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO_ROOT), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    env.setdefault("HF_HUB_OFFLINE", "1")
    env.setdefault("TOKENIZERS_PARALLELISM", "false")
    env.update(extra)
    return env


def worker_command(name: str, *args: object) -> list[str]:
    return [sys.executable, str(WORKERS / f"{name}.py"), *(str(a) for a in args)]


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def require_binary(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.skip(f"{name} is not installed (bash .ci/install_system_deps.sh installs it)")
    return path


def copy_checkout(destination: Path) -> Path:
    """Copy the files a clone would have (tracked + not ignored), without caches, lakes, artifacts or venvs."""
    listed = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"],
        cwd=REPO_ROOT,
        capture_output=True,
        check=True,
    ).stdout.decode("utf-8")
    for relative in filter(None, listed.split("\0")):
        source = REPO_ROOT / relative
        if source.is_file():
            target = destination / relative
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target)
    return destination


def predict_args(model_dir: Path, description: str | None, *options: str) -> Any:
    """The `predict` CLI's arguments as its own parser reads them (every default included), on the CPU."""
    from pipelines.cli import build_parser

    argv = ["predict", "--model", str(model_dir), "--device", "cpu", *options]
    return build_parser().parse_args(argv if description is None else [*argv, description])


def pick_after_prefix(tiny: tuple, prefix: str, preferred: list[str], **texts: list[str] | None) -> str:
    """Drive a fresh plan processor (`texts`: its per-row texts, e.g. coverage_texts) through `prefix` (plan JSON in
    the model's layout) on the tiny model (`tiny`: model, tokenizer, eoc id), then offer `preferred` tokens in falling
    order; the token it keeps."""
    import torch

    from pipelines.serve.constrained import plan_logits_processor

    model, tokenizer, eoc = tiny
    processor = plan_logits_processor(model, tokenizer, eoc, **texts)
    vocab = model.get_output_embeddings().weight.shape[0]
    input_ids = torch.tensor([[eoc]])
    for token in tokenizer(prefix, add_special_tokens=False)["input_ids"]:
        scores = torch.zeros(1, vocab)
        scores[0, token] = 10.0
        assert int(processor(input_ids, scores).argmax()) == token
        input_ids = torch.cat([input_ids, torch.tensor([[token]])], dim=1)
    scores = torch.zeros(1, vocab)
    for rank, piece in enumerate(preferred):
        (token,) = tokenizer(piece, add_special_tokens=False)["input_ids"]
        scores[0, token] = 10.0 - rank
    return tokenizer.decode([int(processor(input_ids, scores).argmax())])


def first_refusal(row: Any, check: Callable[[bytes], bool], plan_text: str) -> bytes | None:
    """Feed a decoding row (`accept_bytes`) plan JSON (in the model's layout) byte by byte, as decoding may offer
    it; the plan up to the first byte `check` refuses (the last 60 bytes), or None when it refuses none."""
    plan = plan_text.encode()
    for at in range(len(plan)):
        if not check(plan[at : at + 1]):
            return plan[: at + 1][-60:]
        row.accept_bytes(plan[at : at + 1])
    return None


def gold_refusals(
    gold: Sequence[tuple[str, str, list[dict]]], row_for: Callable[[str], Any], check_of: Callable[[Any], Any]
) -> list[tuple[str, str, bytes]]:
    """(where, text, refused prefix) of each gold plan a fresh decoding row (`row_for(text)`) refuses somewhere
    (`check_of(row)`: its check of one token), fed byte by byte (`first_refusal`)."""
    refused = []
    for where, text, plan in gold:
        row = row_for(text)
        refusal = first_refusal(row, check_of(row), render_plan({"commands": plan}))
        if refusal is not None:
            refused.append((where, text, refusal))
    return refused
