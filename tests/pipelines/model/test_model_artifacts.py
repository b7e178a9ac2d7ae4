"""Model directories holding pickles or asking for remote code are refused before anything is loaded.

Every pickle planted here would create a marker file if it were ever unpickled, so "refused before
loading" is checked twice: the loader raises our error, and the marker never appears.
"""

from __future__ import annotations

import json
import os
import pickle
import shutil
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from pipelines.model.model_io import (
    UnsafeModelArtifactError,
    check_model_dir,
    load_causal_lm,
    load_model_and_tokenizer,
    load_tokenizer,
)
from tests.helpers import REPO_ROOT, subprocess_env


class _Payload:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def _plant_pickle(path: Path, marker: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(pickle.dumps(_Payload(marker)))


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from pipelines.model.tiny_model import build_tiny_model

    return build_tiny_model(tmp_path_factory.mktemp("tiny_model"))


@pytest.fixture
def marker() -> Path:
    path = Path("/tmp") / f"PWNED_model_{uuid.uuid4().hex}"
    yield path
    path.unlink(missing_ok=True)


@pytest.fixture
def no_transformers_loading(monkeypatch: pytest.MonkeyPatch) -> None:
    """Any attempt to hand the directory to transformers fails loudly: the refusal must come first."""
    import transformers

    def refuse(*args, **kwargs):
        raise AssertionError("transformers was asked to load an unsafe model directory")

    for name in ("AutoModelForCausalLM", "AutoTokenizer", "AutoConfig"):
        monkeypatch.setattr(getattr(transformers, name), "from_pretrained", refuse)


def _auto_map(model_dir: Path, config_name: str) -> None:
    path = model_dir / config_name
    config = json.loads(path.read_text()) if path.exists() else {}
    config["auto_map"] = {"AutoModelForCausalLM": "evil_model.EvilForCausalLM"}
    path.write_text(json.dumps(config))
    (model_dir / "evil_model.py").write_text("raise SystemExit('remote code ran')\n")


UNSAFE_LAYOUTS = {
    "pytorch_model.bin": lambda d, m: _plant_pickle(d / "pytorch_model.bin", m),
    "model.pt": lambda d, m: _plant_pickle(d / "model.pt", m),
    "weights.pth": lambda d, m: _plant_pickle(d / "weights.pth", m),
    "last.ckpt": lambda d, m: _plant_pickle(d / "last.ckpt", m),
    "extra.pkl": lambda d, m: _plant_pickle(d / "extra.pkl", m),
    "nested/adapter_model.bin": lambda d, m: _plant_pickle(d / "nested" / "adapter_model.bin", m),
    "upper-case suffix MODEL.BIN": lambda d, m: _plant_pickle(d / "MODEL.BIN", m),
    "config.json auto_map": lambda d, m: _auto_map(d, "config.json"),
    "tokenizer_config.json auto_map": lambda d, m: _auto_map(d, "tokenizer_config.json"),
    "adapter_config.json auto_map": lambda d, m: _auto_map(d, "adapter_config.json"),
    "pickle weights only": lambda d, m: (
        [p.unlink() for p in d.glob("*.safetensors")],
        _plant_pickle(d / "pytorch_model.bin", m),
    ),
}
EXPECTED_IN_MESSAGE = {
    "pytorch_model.bin": "pytorch_model.bin",
    "model.pt": "model.pt",
    "weights.pth": "weights.pth",
    "last.ckpt": "last.ckpt",
    "extra.pkl": "extra.pkl",
    "nested/adapter_model.bin": "adapter_model.bin",
    "upper-case suffix MODEL.BIN": "MODEL.BIN",
    "config.json auto_map": "auto_map",
    "tokenizer_config.json auto_map": "auto_map",
    "adapter_config.json auto_map": "auto_map",
    "pickle weights only": "pytorch_model.bin",
}


def _unsafe_copy(tiny_model: Path, tmp_path: Path, layout: str, marker: Path) -> Path:
    model_dir = tmp_path / "model"
    shutil.copytree(tiny_model, model_dir)
    UNSAFE_LAYOUTS[layout](model_dir, marker)
    return model_dir


@pytest.mark.parametrize("layout", sorted(UNSAFE_LAYOUTS))
@pytest.mark.parametrize("loader", [load_model_and_tokenizer, load_causal_lm, load_tokenizer, check_model_dir],
                         ids=lambda f: f.__name__)
def test_unsafe_model_dir_is_refused_before_loading(
    tiny_model: Path, tmp_path: Path, marker: Path, no_transformers_loading, layout: str, loader
) -> None:
    model_dir = _unsafe_copy(tiny_model, tmp_path, layout, marker)
    with pytest.raises(UnsafeModelArtifactError) as caught:
        loader(model_dir)
    assert EXPECTED_IN_MESSAGE[layout] in str(caught.value)
    assert str(model_dir) in str(caught.value)
    assert not marker.exists()


def test_safe_tiny_model_still_loads(tiny_model: Path) -> None:
    model, tokenizer = load_model_and_tokenizer(tiny_model)
    assert model is not None and tokenizer.pad_token is not None


def _with_recorded_prompt(tiny_model: Path, model_dir: Path, prompt: str) -> Path:
    from pipelines.lineage.manifest import MANIFEST_NAME

    shutil.copytree(tiny_model, model_dir)
    (model_dir / MANIFEST_NAME).write_text(json.dumps({"system_prompt": prompt, "git": {"commit": "abc"}}))
    return model_dir


def test_a_model_trained_under_this_checkouts_system_prompt_loads(tiny_model: Path, tmp_path: Path) -> None:
    from pipelines.model.prompts import system_prompt

    model, _ = load_model_and_tokenizer(_with_recorded_prompt(tiny_model, tmp_path / "model", system_prompt()))
    assert model is not None


def test_a_model_trained_under_another_system_prompt_is_refused(tiny_model: Path, tmp_path: Path) -> None:
    from pipelines.model.prompts import system_prompt

    prompt = "Turn the step into commands. Output JSON only."
    model_dir = _with_recorded_prompt(tiny_model, tmp_path / "model", prompt)
    with pytest.raises(ValueError, match="trained with the system prompt") as caught:
        load_model_and_tokenizer(model_dir)
    assert str(model_dir) in str(caught.value) and prompt in str(caught.value) and system_prompt() in str(caught.value)


def test_merge_refuses_an_adapter_with_a_pickle(tiny_model: Path, tmp_path: Path, marker: Path) -> None:
    from pipelines.model.merge import merge_adapter

    adapter = tmp_path / "adapter"
    adapter.mkdir()
    (adapter / "adapter_config.json").write_text(json.dumps({"peft_type": "LORA", "r": 8}))
    _plant_pickle(adapter / "adapter_model.bin", marker)
    with pytest.raises(UnsafeModelArtifactError, match="adapter_model.bin"):
        merge_adapter(tiny_model, adapter, tmp_path / "merged")
    assert not marker.exists()
    assert not (tmp_path / "merged").exists() or not any((tmp_path / "merged").iterdir())


@pytest.mark.parametrize("planted", ["adapter_model.bin", "rng_state_extra.pt", "pytorch_model.bin"])
def test_resume_checkpoint_allows_only_the_trainers_own_state_files(
    tmp_path: Path, marker: Path, planted: str
) -> None:
    checkpoint = tmp_path / "checkpoint-4"
    checkpoint.mkdir()
    for name in ("optimizer.pt", "scheduler.pt", "rng_state.pth", "training_args.bin"):
        (checkpoint / name).write_bytes(b"trainer state")
    check_model_dir(checkpoint, allow_trainer_state=True)  # the Trainer's own files are accepted
    _plant_pickle(checkpoint / planted, marker)
    with pytest.raises(UnsafeModelArtifactError, match=planted.replace(".", r"\.")):
        check_model_dir(checkpoint, allow_trainer_state=True)
    assert not marker.exists()


@pytest.mark.parametrize("layout", ["pytorch_model.bin", "config.json auto_map"])
def test_predict_cli_refuses_an_unsafe_model(tiny_model: Path, tmp_path: Path, marker: Path, layout: str) -> None:
    model_dir = _unsafe_copy(tiny_model, tmp_path, layout, marker)
    completed = subprocess.run(
        [sys.executable, "-m", "pipelines", "predict", "--model", str(model_dir), "行1:用通道1吸取20ul"],
        cwd=REPO_ROOT, env=subprocess_env(), capture_output=True, text=True, timeout=180,
    )
    assert completed.returncode == 2, completed.stderr[-3000:]
    assert completed.stdout == ""
    assert "refusing to load" in completed.stderr and EXPECTED_IN_MESSAGE[layout] in completed.stderr
    assert not marker.exists()
