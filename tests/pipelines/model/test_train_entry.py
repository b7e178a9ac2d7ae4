"""The training request: a typed TrainConfig in memory, JSON on disk, and nothing lost on the way."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pipelines.model.train_entry import TrainingRequest
from tests.helpers import smoke_config


def _request(**overrides: object) -> TrainingRequest:
    return TrainingRequest(
        train_config=smoke_config(**overrides), base_model_dir="/base", data_path="/lake/augmented_training_set",
        data_version=3, output_dir="/run", manifest={"kind": "lora_checkpoint"},
    )


def test_a_request_reads_back_as_the_typed_request_it_was(tmp_path: Path) -> None:
    request = _request(max_steps=2, lora_target_modules=["q_proj", "v_proj"])
    assert TrainingRequest.read(request.write(tmp_path / "request.json")) == request


def test_an_unknown_training_setting_in_a_request_is_named(tmp_path: Path) -> None:
    path = _request().write(tmp_path / "request.json")
    values = json.loads(path.read_text(encoding="utf-8"))
    values["train_config"]["lorra_r"] = 4
    path.write_text(json.dumps(values), encoding="utf-8")
    with pytest.raises(ValueError, match="train_config.lorra_r"):
        TrainingRequest.read(path)
