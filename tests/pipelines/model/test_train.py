"""LoRA training on the tiny model: what changes, what must not, weights, checkpoints and resume."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pandas as pd
import pytest

from pipelines.lineage.manifest import MANIFEST_NAME, sha256_weights
from pipelines.model.checkpoints import COMPLETE_MARKER, CONFIG_NAME, find_resume_checkpoint, run_fingerprint
from pipelines.model.model_io import load_causal_lm, load_tokenizer
from pipelines.model.plan_layout import model_target
from pipelines.model.prompts import build_completion_ids, build_prompt_ids
from pipelines.model.train import train_lora
from pipelines.model.training_data import tokenize_rows
from tests.helpers import completion_for, smoke_config


@pytest.fixture(scope="module")
def trained_run(tiny_base_dir, tmp_path_factory):
    from tests.helpers import make_augmented_frame

    base_hash_before = sha256_weights(tiny_base_dir)
    result = train_lora(smoke_config(), tiny_base_dir, make_augmented_frame(),
                        tmp_path_factory.mktemp("run"), manifest={"data": {"delta_version": 3}})
    return result, base_hash_before


def test_lora_weights_change_and_base_weights_do_not(trained_run, tiny_base_dir):
    import torch
    from peft import PeftModel
    from safetensors.torch import load_file

    result, base_hash_before = trained_run
    assert sha256_weights(tiny_base_dir) == base_hash_before  # files on disk untouched

    adapter = load_file(str(result.adapter_dir / "adapter_model.safetensors"))
    lora_b = [name for name in adapter if "lora_B" in name]
    assert lora_b, "no LoRA B matrices saved"
    # LoRA B starts at zero: any non-zero entry means training moved it.
    assert any(adapter[name].abs().max() > 0 for name in lora_b)
    assert {"q_proj", "k_proj", "v_proj", "o_proj"} <= {n.split(".")[-3] for n in lora_b}

    base = load_causal_lm(tiny_base_dir)
    reference = {k: v.clone() for k, v in base.state_dict().items()}
    peft_model = PeftModel.from_pretrained(base, str(result.adapter_dir))
    for name, value in peft_model.get_base_model().state_dict().items():
        clean = name.replace(".base_layer", "").replace(".token_adapter", "")
        if clean in reference and "lora_" not in name and "trainable_tokens" not in name:
            assert torch.equal(value, reference[clean]), f"{name} changed"


def test_only_the_eoc_embedding_row_is_trained(trained_run, tiny_base_dir):
    from safetensors.torch import load_file

    result, _ = trained_run
    adapter = load_file(str(result.adapter_dir / "adapter_model.safetensors"))
    token_deltas = [name for name in adapter if "trainable_tokens" in name]
    assert token_deltas, "the <eoc> row is not trainable"
    eoc_id = load_tokenizer(tiny_base_dir).convert_tokens_to_ids("<eoc>")
    config = json.loads((result.adapter_dir / "adapter_config.json").read_text())
    assert config["trainable_token_indices"] in ([eoc_id], {"embed_tokens": [eoc_id]})
    assert all(adapter[name].shape[0] == 1 for name in token_deltas)


def test_artifacts_are_safetensors_with_config_and_markers(trained_run):
    result, _ = trained_run
    assert (result.adapter_dir / "adapter_model.safetensors").is_file()
    assert not list(result.adapter_dir.glob("*.bin"))
    checkpoints = sorted((result.output_dir / "checkpoints").glob("checkpoint-*"))
    assert checkpoints
    for checkpoint in checkpoints:
        assert (checkpoint / COMPLETE_MARKER).is_file()
        saved = json.loads((checkpoint / CONFIG_NAME).read_text())
        assert saved["lora_r"] == 8 and saved["resolved_device"] == "cpu"
    assert list((result.output_dir / "tensorboard").glob("events.out.tfevents.*"))
    assert not (result.output_dir / "checkpoints" / "runs").exists()
    assert result.loss_curve_png is not None and result.loss_curve_png.stat().st_size > 1000


def test_manifest_and_metrics(trained_run):
    result, _ = trained_run
    manifest = json.loads((result.adapter_dir / MANIFEST_NAME).read_text())
    assert manifest["data"] == {"delta_version": 3}
    assert manifest["training_config"]["lora_alpha"] == 16
    assert manifest["adapter_sha256"] == sha256_weights(result.adapter_dir)
    assert len(manifest["data_used"]["train_sample_ids"]) == 7
    assert manifest["data_used"]["eval_source_index"] == ["src007", "src008", "src009"]
    metrics = result.metrics
    assert metrics["device"] == "cpu" and metrics["tokens_seen"] > 0 and metrics["tokens_per_s"] > 0
    assert metrics["global_step"] == 4  # 7 train rows, batch 4, 2 epochs
    assert metrics["eval_rows"] == 3


def test_completion_only_labels_mask_the_prompt(tiny_base_dir, augmented_frame):
    tokenizer = load_tokenizer(tiny_base_dir)
    dataset, _ = tokenize_rows(augmented_frame, tokenizer, max_length=4096)
    row = augmented_frame.sort_values("sample_id").iloc[0]
    first = dataset[0]
    n_prompt = len(build_prompt_ids(tokenizer, row["prompt"]))
    assert first["labels"][:n_prompt] == [-100] * n_prompt
    assert first["labels"][n_prompt:] == first["input_ids"][n_prompt:]
    assert tokenizer.decode(first["labels"][n_prompt:]) == model_target(row["completion"])  # the model's layout
    assert first["labels"][-1] == tokenizer.convert_tokens_to_ids("<eoc>")


def test_weights_are_normalized_to_mean_one_and_overlong_rows_dropped(tiny_base_dir, augmented_frame):
    tokenizer = load_tokenizer(tiny_base_dir)
    dataset, dropped = tokenize_rows(augmented_frame, tokenizer, max_length=4096)
    assert dropped == 0
    assert sum(dataset["sample_weight"]) / len(dataset) == pytest.approx(1.0)
    cut = sorted(len(ids) for ids in dataset["input_ids"])[len(dataset) // 2]
    short, dropped_short = tokenize_rows(augmented_frame, tokenizer, max_length=cut)
    assert dropped_short > 0 and len(short) + dropped_short == len(augmented_frame)
    assert max(len(ids) for ids in short["input_ids"]) <= cut


def _completion_loss(model, tokenizer, prompt: str, completion: str) -> float:
    import torch

    prompt_ids = build_prompt_ids(tokenizer, prompt)
    completion_ids = tokenizer(completion, add_special_tokens=False)["input_ids"]
    ids = torch.tensor([prompt_ids + completion_ids])
    labels = torch.tensor([[-100] * len(prompt_ids) + completion_ids])
    with torch.no_grad():
        return float(model(input_ids=ids, labels=labels).loss)


def test_heavier_sample_weight_moves_that_samples_loss_more(tiny_base_dir, tmp_path):
    from peft import PeftModel

    heavy_prompt, light_prompt = "用通道1-2安装50ul枪头", "Wait 2 minutes"
    heavy_completion = completion_for([("GetDiti", {"ditiType": "50ul", "channels": [1, 2]})])
    light_completion = completion_for([("Delay", {"seconds": 120})])

    def frame(heavy_weight: float) -> pd.DataFrame:
        return pd.DataFrame([
            {"sample_id": "a", "source_index": "a", "prompt": heavy_prompt, "completion": heavy_completion,
             "weight": heavy_weight, "split": "train"},
            {"sample_id": "b", "source_index": "b", "prompt": light_prompt, "completion": light_completion,
             "weight": 1.0, "split": "train"},
            {"sample_id": "c", "source_index": "c", "prompt": light_prompt, "completion": light_completion,
             "weight": 1.0, "split": "eval"},
        ])

    tokenizer = load_tokenizer(tiny_base_dir)
    base = load_causal_lm(tiny_base_dir)
    before = _completion_loss(base, tokenizer, heavy_prompt, heavy_completion)

    drops = {}
    for heavy_weight in (1.0, 9.0):
        config = smoke_config(max_steps=3, eval_strategy="no", per_device_train_batch_size=2, lora_dropout=0.0)
        result = train_lora(config, tiny_base_dir, frame(heavy_weight), tmp_path / f"w{heavy_weight}")
        model = PeftModel.from_pretrained(load_causal_lm(tiny_base_dir), str(result.adapter_dir)).eval()
        drops[heavy_weight] = before - _completion_loss(model, tokenizer, heavy_prompt, heavy_completion)
    assert drops[9.0] > drops[1.0] > 0


def _fake_checkpoint(root: Path, step: int, complete: bool) -> Path:
    path = root / f"checkpoint-{step}"
    path.mkdir(parents=True)
    (path / "adapter_model.safetensors").write_bytes(b"")
    if complete:
        (path / COMPLETE_MARKER).write_text("{}")
    return path


def test_find_resume_checkpoint_sets_incomplete_ones_aside(tmp_path):
    _fake_checkpoint(tmp_path, 2, complete=True)
    newest_complete = _fake_checkpoint(tmp_path, 10, complete=True)
    _fake_checkpoint(tmp_path, 12, complete=False)
    assert find_resume_checkpoint(tmp_path) == newest_complete
    assert not (tmp_path / "checkpoint-12").exists()
    aside = [p for p in tmp_path.iterdir() if p.name.startswith("incomplete-checkpoint-12")]
    assert len(aside) == 1 and (aside[0] / "adapter_model.safetensors").exists()  # kept, not deleted
    assert find_resume_checkpoint(tmp_path / "missing") is None


def test_training_resumes_from_the_newest_complete_checkpoint(tiny_base_dir, augmented_frame, tmp_path):
    config = smoke_config(max_steps=2, eval_strategy="steps", eval_steps=1, num_train_epochs=10)
    first = train_lora(config, tiny_base_dir, augmented_frame, tmp_path)
    assert first.metrics["global_step"] == 2
    checkpoints = tmp_path / "checkpoints"
    # A crash while writing checkpoint-3: files present, completeness marker missing.
    half_written = checkpoints / "checkpoint-3"
    shutil.copytree(checkpoints / "checkpoint-2", half_written)
    (half_written / COMPLETE_MARKER).unlink()
    trainer_state = json.loads((half_written / "trainer_state.json").read_text())
    trainer_state["global_step"] = 3
    (half_written / "trainer_state.json").write_text(json.dumps(trainer_state))

    resumed = train_lora(smoke_config(max_steps=4, eval_strategy="steps", eval_steps=1, num_train_epochs=10),
                         tiny_base_dir, augmented_frame, tmp_path)
    assert resumed.metrics["resumed_from"] == str(checkpoints / "checkpoint-2")
    assert resumed.metrics["global_step"] == 4
    assert [p for p in checkpoints.iterdir() if p.name.startswith("incomplete-checkpoint-3")]
    assert (checkpoints / "checkpoint-4" / COMPLETE_MARKER).is_file()


def test_evaluating_at_the_end_evaluates_once_and_still_checkpoints_for_resuming(
    tiny_base_dir, augmented_frame, tmp_path
):
    config = smoke_config(max_steps=4, num_train_epochs=10, eval_strategy="end", save_steps=2)
    result = train_lora(config, tiny_base_dir, augmented_frame, tmp_path)

    assert result.metrics["global_step"] == 4
    assert len(result.metrics["eval_losses"]) == 1  # none along the way: the one after the last step
    assert result.metrics["eval_loss"] == result.metrics["eval_losses"][0]
    assert result.metrics["best_checkpoint"] is None  # nothing to choose from: the last weights are the model
    checkpoints = sorted(p.name for p in (tmp_path / "checkpoints").iterdir() if p.name.startswith("checkpoint-"))
    assert checkpoints == ["checkpoint-2", "checkpoint-4"]


def test_run_fingerprint_changes_with_config_data_or_base():
    reference = run_fingerprint(smoke_config(), "data", "base")
    assert run_fingerprint(smoke_config(), "data", "base") == reference
    assert run_fingerprint(smoke_config(lora_r=4), "data", "base") != reference
    assert run_fingerprint(smoke_config(), "data2", "base") != reference
    assert run_fingerprint(smoke_config(), "data", "base2") != reference


def test_weighted_row_sampling_shows_rare_rows_more_often_than_uniform() -> None:
    import pandas as pd

    from pipelines.model.training_data import select_rows

    rare = [f"r{i:02d}" for i in range(10)]
    common = [f"c{i:02d}" for i in range(190)]
    data = pd.DataFrame(
        {
            "sample_id": rare + common,
            "split": "train",
            "weight": [20.0] * len(rare) + [1.0] * len(common),
        }
    )

    def rare_drawn(sampling: str) -> int:
        rows = select_rows(data, "train", 40, seed=3, sampling=sampling)
        assert len(rows) == 40 and rows["sample_id"].is_unique
        return int(rows["sample_id"].str.startswith("r").sum())

    # Expected share of rare rows: weighted ~ 200/390 of the first draws, uniform 10/200.
    assert rare_drawn("weighted") >= 8
    assert rare_drawn("uniform") <= 5
    with pytest.raises(ValueError, match="row_sampling"):
        select_rows(data, "train", 40, seed=3, sampling="by_length")


def test_decision_tokens_are_the_command_names_and_the_go_on_or_stop_after_each_command(tiny_base_dir) -> None:
    from pipelines.model.training_data import decision_token_flags

    tokenizer = load_tokenizer(tiny_base_dir)
    completion = completion_for([
        ("GetDiti", {"ditiType": "50ul", "channels": [1]}),
        ("Delay", {"seconds": 30}),
        ("DropDiti", {"channels": [1]}),
    ])
    ids = build_completion_ids(tokenizer, completion)
    flags = decision_token_flags(tokenizer, completion)
    assert len(flags) == len(ids)
    decided = [tokenizer.decode([token]) for token, flag in zip(ids, flags) if flag]
    text_of = lambda piece: any(piece in token for token in decided)  # noqa: E731
    # The first token of each command name, then "," (go on) twice and "]" (stop) once.
    assert all(text_of(name[:1]) for name in ("GetDiti", "Delay", "DropDiti"))
    assert sum("," in token for token in decided) == 2 and sum("]" in token for token in decided) == 1
    assert len(decided) == 6


def test_token_weights_weigh_only_the_decision_targets(tiny_base_dir) -> None:
    tokenizer = load_tokenizer(tiny_base_dir)
    completion = completion_for([("Delay", {"seconds": 30})])
    rows = pd.DataFrame({"prompt": ["等待30s"], "completion": [completion], "sample_id": ["s1"], "weight": [1.0]})
    plain, _ = tokenize_rows(rows, tokenizer, max_length=512, decision_token_weight=1.0)
    weighted, _ = tokenize_rows(rows, tokenizer, max_length=512, decision_token_weight=5.0)
    assert plain["input_ids"] == weighted["input_ids"] and set(plain["token_weights"][0]) == {1.0}
    labels, weights = weighted["labels"][0], weighted["token_weights"][0]
    assert all(w == 1.0 for label, w in zip(labels, weights) if label == -100)  # the prompt is never weighted
    assert weights.count(5.0) == 2  # the name "Delay" starts, and the plan ends after it


def test_decision_token_weight_raises_the_training_loss_of_an_untrained_model(tiny_base_dir, tmp_path) -> None:
    """Every target of a random model has a positive loss, so weighing some of them x5 raises the first step's loss."""
    from tests.helpers import make_augmented_frame

    def first_train_loss(weight: float) -> float:
        config = smoke_config(max_steps=1, decision_token_weight=weight, eval_strategy="no")
        return train_lora(config, tiny_base_dir, make_augmented_frame(), tmp_path / f"w{weight}").metrics["train_loss"]

    assert first_train_loss(5.0) > first_train_loss(1.0) * 1.05


def test_cpu_bf16_resolves_to_bf16_only_where_the_cpu_has_native_bf16(monkeypatch) -> None:
    import torch

    from pipelines.config import TrainConfig
    from pipelines.model import train
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    off = TrainConfig(device="auto", cpu_bf16=False)
    on = TrainConfig(device="auto", cpu_bf16=True)
    assert train.resolve_device(off) == ("cpu", False)
    monkeypatch.setattr(train, "cpu_has_native_bf16", lambda: True)
    assert train.resolve_device(on) == ("cpu", True)
    assert train.resolve_device(TrainConfig(device="cpu", cpu_bf16=True, bf16=False)) == ("cpu", False)
    monkeypatch.setattr(train, "cpu_has_native_bf16", lambda: False)
    assert train.resolve_device(on) == ("cpu", False), "emulated bf16 would be slower than fp32"


# --- a run's identity, the checked <eoc> lookup, and progress ---------------------------------------


def test_run_fingerprint_covers_the_training_code_and_the_world_size() -> None:
    from pipelines.model.checkpoints import training_code_hash

    reference = run_fingerprint(smoke_config(), "data", "base", "code", 1)
    assert run_fingerprint(smoke_config(), "data", "base", "code", 1) == reference
    assert run_fingerprint(smoke_config(), "data", "base", "code2", 1) != reference
    assert run_fingerprint(smoke_config(), "data", "base", "code", 2) != reference
    # Left out, the code is this checkout's: the identity never silently drops it.
    assert run_fingerprint(smoke_config(), "data", "base") == run_fingerprint(
        smoke_config(), "data", "base", training_code_hash(), 1
    )


def test_a_changed_training_source_file_means_a_new_run(tmp_path: Path) -> None:
    from pipelines.model.checkpoints import TRAINING_CODE_FILES, training_code_hash
    from tests.helpers import REPO_ROOT

    for relative in TRAINING_CODE_FILES:
        (tmp_path / relative).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(REPO_ROOT / relative, tmp_path / relative)
    assert training_code_hash(tmp_path) == training_code_hash()
    before = run_fingerprint(smoke_config(), "data", "base", training_code_hash(tmp_path), 1)
    for relative in TRAINING_CODE_FILES:
        original = (tmp_path / relative).read_bytes()
        (tmp_path / relative).write_bytes(original + b"\n# a one-line change\n")
        assert run_fingerprint(smoke_config(), "data", "base", training_code_hash(tmp_path), 1) != before, relative
        (tmp_path / relative).write_bytes(original)
    assert "pipelines/model/train.py" in TRAINING_CODE_FILES and "pipelines/model/prompts.py" in TRAINING_CODE_FILES


def test_training_refuses_a_tokenizer_without_eoc_before_training(tiny_base_dir, augmented_frame, tmp_path) -> None:
    """An unprepared base: `<eoc>` is no token of it, so there is no row to train and nothing to stop on."""
    unprepared = tmp_path / "unprepared"
    shutil.copytree(tiny_base_dir, unprepared)
    for name in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"):
        path = unprepared / name
        if path.is_file():
            path.write_text(path.read_text(encoding="utf-8").replace("<eoc>", "<eox>"), encoding="utf-8")
    assert "<eoc>" not in load_tokenizer(unprepared).get_vocab()

    with pytest.raises(ValueError, match="no '<eoc>' token"):
        train_lora(smoke_config(max_steps=1, eval_strategy="no"), unprepared, augmented_frame, tmp_path / "run")
    assert not (tmp_path / "run" / "adapter").exists()
    assert not (tmp_path / "run" / "checkpoints").exists()


def test_progress_is_reported_at_every_logged_step_and_resume_checks_the_world_size(
    tiny_base_dir, augmented_frame, tmp_path
) -> None:
    from pipelines.model.trainer import TrainingProgress

    reports: list[TrainingProgress] = []
    config = smoke_config(max_steps=2, eval_strategy="steps", eval_steps=1, num_train_epochs=10)
    train_lora(config, tiny_base_dir, augmented_frame, tmp_path, progress=reports.append)

    steps = [r for r in reports if r.loss is not None]
    assert [r.step for r in steps] == [1, 2] and all(r.total_steps == 2 for r in steps)
    assert all(r.loss > 0 for r in steps) and [r.eval_loss is not None for r in reports].count(True) == 2
    assert steps[-1].eta_s == 0 and steps[-1].describe().startswith("training progress: step 2/2 (100%)")
    assert "loss " in steps[0].describe() and "eta " in steps[0].describe()

    # The checkpoint says how many processes wrote it ...
    checkpoint = tmp_path / "checkpoints" / "checkpoint-2"
    saved = json.loads((checkpoint / CONFIG_NAME).read_text())
    assert saved["world_size"] == 1
    # ... so a resume by another number of processes (here: a checkpoint written by two) is refused, not run.
    (checkpoint / CONFIG_NAME).write_text(json.dumps({**saved, "world_size": 2}))
    with pytest.raises(ValueError, match="written by 2 training processes and this run has 1"):
        train_lora(smoke_config(max_steps=4, eval_strategy="steps", eval_steps=1, num_train_epochs=10),
                   tiny_base_dir, augmented_frame, tmp_path)
    assert not (tmp_path / "checkpoints" / "checkpoint-3").exists()


def test_resume_refuses_a_checkpoint_of_another_world_size_or_bf16_resolution(tmp_path) -> None:
    from pipelines.model.checkpoints import check_resume_compatible

    checkpoint = tmp_path / "checkpoint-4"
    checkpoint.mkdir()
    (checkpoint / CONFIG_NAME).write_text(json.dumps({"world_size": 1, "resolved_bf16": True}), encoding="utf-8")
    check_resume_compatible(checkpoint, world_size=1, bf16=True)
    with pytest.raises(ValueError, match="2 training processes|written by 1"):
        check_resume_compatible(checkpoint, world_size=2, bf16=True)
    with pytest.raises(ValueError, match="bf16=True"):
        check_resume_compatible(checkpoint, world_size=1, bf16=False)


def test_bf16_frozen_weights_train_the_same_fp32_adapters_as_without(tiny_base_dir, augmented_frame, tmp_path) -> None:
    import torch
    from safetensors.torch import load_file

    # bf16=True forces autocast on any CPU (emulated where bf16 is not native): the code path, not its speed.
    results = {
        frozen: train_lora(smoke_config(bf16=True, bf16_frozen_weights=frozen, max_steps=2, eval_strategy="no"),
                           tiny_base_dir, augmented_frame, tmp_path / str(frozen))
        for frozen in (False, True)
    }
    adapters = {key: load_file(str(run.adapter_dir / "adapter_model.safetensors")) for key, run in results.items()}
    assert all(tensor.dtype == torch.float32 for tensor in adapters[True].values())
    assert any(adapters[True][name].abs().max() > 0 for name in adapters[True] if "lora_B" in name)
    # Autocast casts fp32 weights to bf16 for every product: storing them so changes no number that training computes.
    assert results[True].metrics["train_loss"] == pytest.approx(results[False].metrics["train_loss"], rel=1e-5)
    for name, tensor in adapters[False].items():
        torch.testing.assert_close(adapters[True][name], tensor, rtol=1e-4, atol=1e-6, msg=lambda m: f"{name}: {m}")
    assert json.loads((results[True].adapter_dir / CONFIG_NAME).read_text())["bf16_frozen_weights"] is True
