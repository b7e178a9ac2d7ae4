"""Fixtures for the training tests: a tiny random model and a small augmented-set frame."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from pipelines.train import TrainConfig

_SAMPLES = [
    ("行1:用通道1从样品板A1吸取20ul", [("Aspirate", {"channels": [1], "labware": "样品板", "wells": ["A1"], "vols": [20]})]),
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


@pytest.fixture(scope="session")
def tiny_base_dir(tmp_path_factory) -> Path:
    """A prepared tiny base model (through pipelines.base_model, like the real one)."""
    from pipelines.base_model import resolve_base_model

    return Path(resolve_base_model("tiny", tmp_path_factory.mktemp("artifacts")).path)


@pytest.fixture()
def augmented_frame() -> pd.DataFrame:
    return make_augmented_frame()


def smoke_config(**overrides) -> TrainConfig:
    values = dict(
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
