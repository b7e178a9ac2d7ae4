"""Training killed mid-run, or while writing a checkpoint, resumes to the adapter an uninterrupted run makes.

All runs go through the real entry point (`pipelines.model.train_entry`) in a subprocess on a tiny random
model, with the smoke profile's shape: a few optimizer steps, a checkpoint every 2 steps, LoRA dropout on
(so the RNG matters) and a linear schedule (so the scheduler state matters).
"""

from __future__ import annotations

import json
import signal
import subprocess
import time
from pathlib import Path

import pandas as pd
import pytest

from data_contracts.forms import parse_text_commands, render_json_commands
from pipelines.config import TrainConfig
from pipelines.data import lake
from pipelines.lineage.manifest import MANIFEST_NAME
from pipelines.model.checkpoints import COMPLETE_MARKER
from pipelines.model.train_entry import TrainingRequest
from tests.helpers import FIXTURES, subprocess_env, worker_command

# Resumed and uninterrupted CPU runs replay the same float ops in the same order; the tolerance only
# absorbs summation-order noise, far below one optimizer step's change (lr 5e-3).
ADAPTER_ATOL = 1e-5
MAX_STEPS = 6
KILL_AFTER_STEP = 2  # checkpoint-2 is complete when the process dies before step 3
KILL_IN_SAVE_STEP = 4  # checkpoint-4 is half written when the process dies

TRAIN_CONFIG = {
    "base_model": "tiny",
    "max_steps": MAX_STEPS,
    "per_device_train_batch_size": 4,
    "per_device_eval_batch_size": 8,
    "learning_rate": 5.0e-3,
    "lr_scheduler_type": "linear",
    "warmup_steps": 0,
    "eval_strategy": "steps",
    "eval_steps": 2,
    "early_stopping_patience": 100,
    "save_total_limit": 10,
    "max_length": 1024,
    "max_train_samples": 16,
    "max_eval_samples": 4,
    "logging_steps": 1,
    "lora_dropout": 0.1,
    "device": "cpu",
    "seed": 7,
}


def _augmented_frame() -> pd.DataFrame:
    rows = []
    lines = (FIXTURES / "sop_examples.jsonl").read_text(encoding="utf-8").splitlines()
    for i, line in enumerate(lines):
        record = json.loads(line)
        turn = record["conversation"][0]
        commands = parse_text_commands(turn["output"])
        for variant, prompt in (("with_prefix", turn["input"]), ("without_prefix", turn["input"].split("：")[-1])):
            rows.append({
                "sample_id": f"{record['id']}-{variant}",
                "source_index": f"src{i:02d}",
                "template": "zh_plain",
                "variant": variant,
                "prompt": prompt,
                "completion": render_json_commands(commands) + "<eoc>",
                "command_names": [c.func_name for c in commands],
                "weight": 1.0 + (i % 3),
                "split": "eval" if i % 5 == 0 else "train",
            })
    return pd.DataFrame(rows)


@pytest.fixture(scope="module")
def training_inputs(tmp_path_factory: pytest.TempPathFactory) -> dict:
    from pipelines.model.tiny_model import build_tiny_model

    root = tmp_path_factory.mktemp("training_faults")
    base = build_tiny_model(root / "base")
    data_path = root / "lake" / lake.AUGMENTED_TABLE
    version = lake.write_table(_augmented_frame(), data_path, table=lake.AUGMENTED_TABLE)
    return {"root": root, "base": base, "data_path": data_path, "data_version": version}


def _request(inputs: dict, name: str) -> tuple[Path, Path]:
    output_dir = inputs["root"] / name
    request = TrainingRequest(
        train_config=TrainConfig(**TRAIN_CONFIG),
        base_model_dir=str(inputs["base"]),
        data_path=str(inputs["data_path"]),
        data_version=inputs["data_version"],
        output_dir=str(output_dir),
    )
    return request.write(inputs["root"] / f"{name}.request.json"), output_dir


def _train(request: Path, mode: str = "none", step: int = 0) -> subprocess.CompletedProcess:
    signal_file = request.with_suffix(".hang")
    command = worker_command("train_with_fault", request, mode, step, signal_file)
    env = subprocess_env(OMP_NUM_THREADS="1")  # 2 shared cores: oversubscribed threads only slow every run down
    if mode == "none":
        completed = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
        assert completed.returncode == 0, completed.stderr[-4000:]
        return completed
    process = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.monotonic() + 300
    while not signal_file.exists():
        assert process.poll() is None, process.stdout.read()[-4000:]
        assert time.monotonic() < deadline, "training never reached the fault point"
        time.sleep(0.1)
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=30)
    assert process.returncode == -signal.SIGKILL
    return subprocess.CompletedProcess(command, process.returncode, "", "")


def _adapter_tensors(output_dir: Path) -> dict:
    from safetensors.torch import load_file

    return load_file(str(output_dir / "adapter" / "adapter_model.safetensors"))


def _metrics(output_dir: Path) -> dict:
    return json.loads((output_dir / MANIFEST_NAME).read_text())["training_metrics"]


@pytest.fixture(scope="module")
def uninterrupted(training_inputs: dict) -> Path:
    request, output_dir = _request(training_inputs, "uninterrupted")
    _train(request)
    return output_dir


def _assert_same_adapter(resumed: Path, reference: Path) -> None:
    ours, theirs = _adapter_tensors(resumed), _adapter_tensors(reference)
    assert ours.keys() == theirs.keys()
    worst = max(float((ours[k].float() - theirs[k].float()).abs().max()) for k in ours)
    assert worst <= ADAPTER_ATOL, f"resumed adapter differs from the uninterrupted one by {worst:.3g}"
    assert any(float(t.abs().max()) > 0 for t in ours.values())


@pytest.mark.slow
def test_training_killed_mid_run_resumes_to_the_uninterrupted_adapter(
    training_inputs: dict, uninterrupted: Path
) -> None:
    request, output_dir = _request(training_inputs, "killed_mid_run")
    _train(request, "after_step", KILL_AFTER_STEP)
    checkpoints = output_dir / "checkpoints"
    complete = checkpoints / f"checkpoint-{KILL_AFTER_STEP}"
    assert (complete / COMPLETE_MARKER).is_file()
    for name in ("optimizer.pt", "scheduler.pt", "rng_state.pth", "trainer_state.json"):
        assert (complete / name).is_file(), f"checkpoint lacks {name}: resume could not restore it"
    assert not (output_dir / "adapter").exists()

    _train(request)

    metrics = _metrics(output_dir)
    assert metrics["resumed_from"] == str(complete)
    assert metrics["global_step"] == _metrics(uninterrupted)["global_step"] == MAX_STEPS
    _assert_same_adapter(output_dir, uninterrupted)
    assert metrics["eval_loss"] == pytest.approx(_metrics(uninterrupted)["eval_loss"], abs=1e-5)


@pytest.mark.slow
def test_training_killed_while_writing_a_checkpoint_sets_it_aside_and_uses_the_previous(
    training_inputs: dict, uninterrupted: Path
) -> None:
    request, output_dir = _request(training_inputs, "killed_in_save")
    _train(request, "in_save", KILL_IN_SAVE_STEP)
    checkpoints = output_dir / "checkpoints"
    half_written = checkpoints / f"checkpoint-{KILL_IN_SAVE_STEP}"
    assert half_written.is_dir() and not (half_written / COMPLETE_MARKER).exists()
    files_in_half_written = sorted(p.name for p in half_written.iterdir())
    previous = checkpoints / f"checkpoint-{KILL_IN_SAVE_STEP - 2}"
    assert (previous / COMPLETE_MARKER).is_file()

    _train(request)

    metrics = _metrics(output_dir)
    assert metrics["resumed_from"] == str(previous)
    set_aside = [p for p in checkpoints.iterdir() if p.name.startswith(f"incomplete-checkpoint-{KILL_IN_SAVE_STEP}-")]
    assert len(set_aside) == 1, sorted(p.name for p in checkpoints.iterdir())
    assert sorted(p.name for p in set_aside[0].iterdir()) == files_in_half_written, "set aside, not emptied"
    # The re-run wrote a new, complete checkpoint at the same step.
    assert (checkpoints / f"checkpoint-{KILL_IN_SAVE_STEP}" / COMPLETE_MARKER).is_file()
    _assert_same_adapter(output_dir, uninterrupted)
