"""`python -m pipelines serve`: the deployed model over HTTP, with the same gate as `predict`.

    python -m pipelines serve [--model DIR] [--host 127.0.0.1] [--port 8000]

The endpoints are described in `pipelines.serve.http_app`. Every description is decoded by
`pipelines.serve.predict.predict_lines` (the one prompt builder, the constrained and grounded decoder, the
catalog gate) and every answer is validated again right before it is rendered. This module checks the
settings, loads and describes the model, warms it up and runs the app under uvicorn.

The default model is the deployed one, `$SOP2CMD_ARTIFACTS/deploy/current` (`pipelines.serve.deploy`). The
symlink is resolved once at start-up and that version stays loaded: after a promotion or a rollback,
restart the server (`/v1/model` always names the version actually answering).

Safety: the server binds to 127.0.0.1 by default. When `SOP2CMD_SERVE_TOKEN` is set, `/v1/*` requires
`Authorization: Bearer <token>`. It refuses to start on a non-loopback address without a token: it answers
with robot commands and burns CPU per request, so an open port on a lab network is not a state to drift
into with a warning scrolled past in a log. Behind a reverse proxy, keep it on 127.0.0.1.
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import logging
import os
import sys
from pathlib import Path
from typing import Any

from pipelines.serve.decode import MAX_PLAN_TOKENS
from pipelines.serve.http_app import ServeLimits, create_app

EXIT_USAGE = 2
TOKEN_ENV = "SOP2CMD_SERVE_TOKEN"
# A description that is always decoded once before the port opens, so the first caller does not pay for the
# grammar compilation and a model that cannot decode never starts serving.
WARMUP_DESCRIPTION = "Wait 5 minutes"
log = logging.getLogger("sop2cmd.serve")


class ServeSetupError(Exception):
    """The server cannot start as asked; the message says why and what to do."""


# --- the model being served ------------------------------------------------------------------------


def default_model_dir() -> Path:
    """The deployed model: `$SOP2CMD_ARTIFACTS/deploy/current` (artifacts root default ./artifacts)."""
    from pipelines.config import artifacts_root
    from pipelines.serve.deploy import CURRENT, deploy_root

    return deploy_root(artifacts_root()) / CURRENT


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        payload = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return payload if isinstance(payload, dict) else None


def describe_model(model_dir: Path) -> dict[str, Any]:
    """What `/v1/model` reports, read from the model directory; checks the weights against their records.

    `model_dir` is resolved once (deploy/current is a symlink to a version folder), and the caller loads the
    resolved folder, so a promotion or rollback while the server starts cannot mix two versions. Raises
    ServeSetupError when lineage.json or deployment.json records a weights hash the files on disk do not
    have: the server would otherwise claim to be a model it is not. Both files are optional otherwise.
    """
    from pipelines.lineage.manifest import MANIFEST_NAME, sha256_weights
    from pipelines.serve.deploy import DEPLOYMENT_RECORD  # what promotion writes into each version folder

    resolved = model_dir.resolve()
    manifest = _read_json(resolved / MANIFEST_NAME) or {}
    deployment = _read_json(resolved / DEPLOYMENT_RECORD) or {}
    weights_sha256 = sha256_weights(resolved)
    for name, record in ((MANIFEST_NAME, manifest), (DEPLOYMENT_RECORD, deployment)):
        recorded = record.get("merged_weights_sha256")
        if recorded and recorded != weights_sha256:
            raise ServeSetupError(
                f"{resolved}: the weights on disk hash to {weights_sha256}, but {name} records {recorded}; "
                f"the directory was modified after it was written, refusing to serve it"
            )
    if not manifest:
        log.warning("%s has no readable %s: /v1/model will report no lineage for it", resolved, MANIFEST_NAME)

    def section(record: dict[str, Any], key: str) -> dict[str, Any]:
        value = record.get(key)
        return value if isinstance(value, dict) else {}

    data, training = section(manifest, "data"), section(manifest, "training_config")
    return {
        "model_dir": str(model_dir),
        "resolved_dir": str(resolved),
        "kind": manifest.get("kind"),
        "merged_weights_sha256": weights_sha256,
        "lineage_verified": bool(manifest.get("merged_weights_sha256")),  # lineage.json records this very hash
        "adapter_sha256": manifest.get("adapter_sha256"),
        "profile": manifest.get("profile") or training.get("profile"),
        "data": {key: data.get(key) for key in ("table", "delta_version", "content_hash", "raw_files_md5")},
        "base_model": {key: section(manifest, "base_model").get(key) for key in ("source", "weights_sha256")},
        "git_commit": section(manifest, "git").get("commit"),
        # None: not a promoted copy (e.g. --model artifacts/merged_model).
        "promoted_at": deployment.get("promoted_at"),
        "deployment": {key: deployment.get(key) for key in ("version", "promoted_at", "previous", "run_id")},
    }



# --- command line ---------------------------------------------------------------------------------------


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", default=None,
                        help="model directory (default: the deployed model, $SOP2CMD_ARTIFACTS/deploy/current)")
    parser.add_argument("--host", default="127.0.0.1",
                        help=f"address to bind (default 127.0.0.1; any other needs ${TOKEN_ENV})")
    parser.add_argument("--port", type=int, default=8000, help="port (0: any free port, named in the log)")
    parser.add_argument("--max-batch-size", type=int, default=32,
                        help="most descriptions decoded in one batch (1 turns batching off)")
    parser.add_argument("--max-wait-ms", type=float, default=25.0,
                        help="how long an idle server waits for more descriptions to join a batch")
    parser.add_argument("--max-queue", type=int, default=1024,
                        help="descriptions waiting to be decoded before new requests get 503")
    parser.add_argument("--max-descriptions", type=int, default=ServeLimits.max_descriptions,
                        help="most descriptions in one request")
    parser.add_argument("--max-body-bytes", type=int, default=ServeLimits.max_body_bytes,
                        help="largest request body accepted")
    parser.add_argument("--max-new-tokens", type=int, default=MAX_PLAN_TOKENS)
    parser.add_argument("--device", default=None, help="torch device (default: cuda if available, else cpu)")
    parser.add_argument("--log-level", default="info", choices=["critical", "error", "warning", "info", "debug"])


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False  # a host name other than localhost may resolve to anything


def serve_token(environ: dict[str, str] | None = None) -> str | None:
    """The bearer token from the environment; None when unset. A set but blank token is a mistake, not 'no token'."""
    value = (os.environ if environ is None else environ).get(TOKEN_ENV)
    if value is None:
        return None
    if not value.strip():
        raise ServeSetupError(f"{TOKEN_ENV} is set but empty; unset it or give it a real token")
    return value


def check_bind(host: str, token: str | None) -> None:
    if token is None and not is_loopback(host):
        raise ServeSetupError(
            f"refusing to serve on {host} without a token: anyone who can reach that address could request robot "
            f"commands. Set {TOKEN_ENV} (callers then send 'Authorization: Bearer <token>'), or bind 127.0.0.1 and "
            f"put a reverse proxy in front (see README, 'Deploy and serve')"
        )


MAX_CONNECTIONS = 256


def _check_numbers(args: argparse.Namespace) -> None:
    for name in ("max_batch_size", "max_queue", "max_descriptions", "max_body_bytes", "max_new_tokens"):
        if getattr(args, name) < 1:
            raise ServeSetupError(f"--{name.replace('_', '-')} must be >= 1")
    if args.max_wait_ms < 0:
        raise ServeSetupError("--max-wait-ms must be >= 0")
    if not 0 <= args.port <= 65535:
        raise ServeSetupError("--port must be between 0 and 65535")
    if args.max_descriptions > args.max_queue:
        # A full-size request could never fit the queue: it would get 503 and retry forever.
        raise ServeSetupError("--max-descriptions must not exceed --max-queue")


def _resolve_model_dir(requested: str | None) -> Path:
    if requested is not None:
        model_dir = Path(requested)
        if not model_dir.is_dir():
            raise ServeSetupError(f"model directory not found: {model_dir}")
        return model_dir
    model_dir = default_model_dir()
    if not model_dir.is_dir():
        raise ServeSetupError(
            f"no deployed model at {model_dir} (from $SOP2CMD_ARTIFACTS, default ./artifacts): deploy one first, "
            f"or pass --model DIR (e.g. artifacts/merged_model)"
        )
    return model_dir


def run(args: argparse.Namespace) -> int:
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        _check_numbers(args)
        token = serve_token()
        check_bind(args.host, token)  # before loading anything: a refused start should be quick
        model_dir = _resolve_model_dir(args.model)
        app = _build_app(args, model_dir, token)
    except ServeSetupError as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_USAGE

    import uvicorn

    # proxy_headers with the default forwarded_allow_ips (127.0.0.1): client addresses in the access log come
    # from X-Forwarded-For only when a proxy on this machine sets it.
    # Open connections are bounded (uvicorn answers 503 above it): each may hold a body of up to --max-body-bytes.
    config = uvicorn.Config(app, host=args.host, port=args.port, log_level=args.log_level, server_header=False,
                            timeout_graceful_shutdown=60, limit_concurrency=MAX_CONNECTIONS)
    uvicorn.Server(config).run(sockets=[config.bind_socket()])  # bind_socket logs the actual port (for --port 0)
    return 0


def _build_app(args: argparse.Namespace, model_dir: Path, token: str | None) -> Any:
    from pipelines.model.model_io import UnsafeModelArtifactError, load_model_and_tokenizer
    from pipelines.serve.batching import BatchingConfig
    from pipelines.serve.decode import DecodingConfig
    from pipelines.serve.predict import inference_device, predict_lines

    try:
        info = describe_model(model_dir)
        model, tokenizer = load_model_and_tokenizer(Path(info["resolved_dir"]), device=inference_device(args.device))
    except (FileNotFoundError, OSError, UnsafeModelArtifactError, ValueError) as error:
        raise ServeSetupError(f"cannot load the model from {model_dir}: {error}") from error
    # batch_size = max_batch_size: predict_lines then makes one generate call per batch the batcher hands it.
    decoding = DecodingConfig(max_new_tokens=args.max_new_tokens, batch_size=args.max_batch_size)

    def decode(descriptions: list[str]) -> list[Any]:
        return predict_lines(model, tokenizer, descriptions, decoding)

    warm = decode([WARMUP_DESCRIPTION])[0]
    log.info("serving %s (weights %s, profile %s, promoted %s); warm-up plan %s", info["resolved_dir"],
             info["merged_weights_sha256"][:12], info["profile"], info["promoted_at"],
             "valid" if warm.catalog_valid else "rejected")
    batching = BatchingConfig(max_batch_size=args.max_batch_size, max_wait_s=args.max_wait_ms / 1000,
                              max_queued=args.max_queue)
    limits = ServeLimits(max_descriptions=args.max_descriptions, max_body_bytes=args.max_body_bytes)
    return create_app(decode, info, batching=batching, limits=limits, token=token)
