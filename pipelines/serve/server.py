"""`python -m pipelines serve`: the deployed model over HTTP, with the same gate as `predict`.

    python -m pipelines serve [--model DIR] [--host 127.0.0.1] [--port 8000]

Endpoints (JSON in, JSON out):

- `POST /v1/plans` with `{"description": "..."}` answers `{"commands": [...]}` or `{"error": {...}}`;
  with `{"descriptions": [...]}` it answers `{"results": [...]}`, one such record per description, in order.
  Both are HTTP 200: the request was fine, and the record says whether the model produced a valid plan.
  An error names each broken rule (command index, command, field, rule) as `predict` does; the raw model
  output is written to the server log under the error's `log_id`, never returned.
- `GET /v1/model`: which model answers (weights hash, profile, data versions, deployed version and its
  promotion time), so a caller can record it; every `/v1/plans` answer also carries the weights hash in the
  `X-Sop2cmd-Model-Sha256` header.
- `GET /healthz`: liveness and batching counters (never needs the token).

Every description is decoded by `pipelines.serve.predict.predict_lines` (the one prompt builder, the constrained and
grounded decoder, the catalog gate) and every answer is rendered by `pipelines.serve.plan_output`, which validates
again right before rendering: nothing unvalidated leaves the server. Descriptions that arrive together are
decoded together (`pipelines.serve.batching`). Bad requests get a 4xx naming what is wrong.

The default model is the deployed one, `$SOP2CMD_ARTIFACTS/deploy/current` (`pipelines.serve.deploy`). The symlink
is resolved once at start-up and that version stays loaded: after a promotion or a rollback, restart the
server (`/v1/model` always names the version actually answering).

Safety: the server binds to 127.0.0.1 by default. When `SOP2CMD_SERVE_TOKEN` is set, `/v1/*` requires
`Authorization: Bearer <token>`. It refuses to start on a non-loopback address without a token: it answers
with robot commands and burns CPU per request, so an open port on a lab network is not a state to drift into
with a warning scrolled past in a log. Behind a reverse proxy, keep it on 127.0.0.1.
"""

# No `from __future__ import annotations` here: FastAPI reads the handlers' annotations (Request, the bearer
# credentials) at definition time, and those names are imported inside create_app to keep `--help` fast.
import argparse
import hmac
import ipaddress
import json
import logging
import os
import sys
import uuid
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

EXIT_USAGE = 2
TOKEN_ENV = "SOP2CMD_SERVE_TOKEN"
# A description that is always decoded once before the port opens, so the first caller does not pay for the
# grammar compilation and a model that cannot decode never starts serving.
WARMUP_DESCRIPTION = "Wait 5 minutes"
log = logging.getLogger("sop2cmd.serve")


class ServeSetupError(Exception):
    """The server cannot start as asked; the message says why and what to do."""


@dataclass(frozen=True)
class ServeLimits:
    max_descriptions: int = 64  # per request
    # Enough for max_descriptions descriptions of the longest accepted length, even with every character
    # \uXXXX-escaped (6 bytes); a larger body is refused before it is read.
    max_body_bytes: int = 2 * 1024 * 1024


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
    from pipelines.serve.deploy import DEPLOYMENT_RECORD  # what promotion writes into each version folder
    from pipelines.lineage.manifest import MANIFEST_NAME, sha256_weights

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
        "promoted_at": deployment.get("promoted_at"),  # None: not a promoted copy (e.g. --model artifacts/merged_model)
        "deployment": {key: deployment.get(key) for key in ("version", "promoted_at", "previous", "run_id")},
    }


# --- request checking ----------------------------------------------------------------------------------


class RequestError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def _plan_request_model() -> type:
    from pydantic import BaseModel, ConfigDict

    class PlanRequest(BaseModel):
        """Exactly one of `description` and `descriptions`."""

        # strict: a number is not silently turned into a description; forbid: a typo'd key is named, not ignored.
        model_config = ConfigDict(extra="forbid", strict=True)

        description: str | None = None
        descriptions: list[str] | None = None

    return PlanRequest


def parse_plan_request(body: bytes, limits: ServeLimits) -> tuple[list[str], bool]:
    """The descriptions of a `POST /v1/plans` body and whether it was the single form; RequestError if bad."""
    from pydantic import ValidationError

    from pipelines.serve.predict import MAX_DESCRIPTION_CHARS

    model = _plan_request_model()
    try:
        request = model.model_validate_json(body)
    except ValidationError as error:
        problems = error.errors(include_url=False, include_input=False)
        if any(problem["type"] == "json_invalid" for problem in problems):
            raise RequestError(400, f"the body is not valid JSON: {problems[0]['msg']}") from None
        described = "; ".join(
            f"{'.'.join(str(part) for part in problem['loc']) or 'body'}: {problem['msg']}" for problem in problems
        )
        raise RequestError(422, f"the body must be {{\"description\": str}} or {{\"descriptions\": [str, ...]}} ({described})") from None
    if (request.description is None) == (request.descriptions is None):
        raise RequestError(422, 'give exactly one of "description" (a string) and "descriptions" (a list of strings)')
    single = request.description is not None
    descriptions = [request.description] if single else list(request.descriptions)
    if not descriptions:
        raise RequestError(422, '"descriptions" is empty; give at least one description')
    if len(descriptions) > limits.max_descriptions:
        raise RequestError(
            422, f'"descriptions" has {len(descriptions)} entries, more than the limit of {limits.max_descriptions} per request'
        )
    for index, description in enumerate(descriptions):
        where = '"description"' if single else f'"descriptions"[{index}]'
        if not description.strip():
            raise RequestError(422, f"{where} is empty")
        if len(description) > MAX_DESCRIPTION_CHARS:
            raise RequestError(
                422, f"{where} is {len(description)} characters long, more than the limit of {MAX_DESCRIPTION_CHARS}"
            )
    return descriptions, single


async def read_body_limited(request: Any, limit: int) -> bytes:
    """The request body, refusing (413) one over `limit` bytes before reading it when its length is declared."""
    declared = request.headers.get("content-length")
    if declared is not None:
        try:
            size = int(declared)
        except ValueError:
            raise RequestError(400, "the Content-Length header is not a number") from None
        if size > limit:
            raise RequestError(413, f"the body is {size} bytes, more than the limit of {limit}")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:  # a chunked body declares no length; stop reading as soon as it is too long
            raise RequestError(413, f"the body is more than the limit of {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def public_record(plan: Any, description: str) -> dict[str, Any]:
    """What a caller gets for one description: the validated plan, or the error without the raw output.

    `plan.output_record()` validates the commands again right before rendering them, so a plan can only
    come out as commands if it passes the catalog at this moment. The raw output of a rejected plan goes to
    the log under a `log_id` that the error carries, so an operator can find it.
    """
    record = plan.output_record()
    error = record.get("error")
    if error is None:
        return record
    log_id = uuid.uuid4().hex[:16]
    raw_output = error.pop("raw_output", "")
    log.warning(
        "plan rejected %s",
        json.dumps({"log_id": log_id, "description": description, "issues": error["issues"], "raw_output": raw_output},
                   ensure_ascii=False),
    )
    return {"error": {**error, "log_id": log_id}}


# --- the application ------------------------------------------------------------------------------------


def create_app(
    decode: Callable[[list[str]], Sequence[Any]],
    model_info: dict[str, Any],
    *,
    batching: Any = None,
    limits: ServeLimits | None = None,
    token: str | None = None,
) -> Any:
    """The ASGI app. `decode(descriptions)` returns one CheckedPlan per description (`predict_lines`)."""
    from contextlib import asynccontextmanager

    from fastapi import Depends, FastAPI, Request
    from fastapi.responses import JSONResponse
    from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

    from pipelines.serve.batching import BatcherStopped, BatchingConfig, MicroBatcher, QueueFull

    limits = limits or ServeLimits()
    batcher: MicroBatcher[Any] = MicroBatcher(decode, batching or BatchingConfig())
    served = {**model_info, "serving": {**asdict(batcher.config), **asdict(limits), "token_required": bool(token)}}
    bearer = HTTPBearer(auto_error=False)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        await batcher.start()
        try:
            yield
        finally:
            await batcher.stop()

    # No /docs or /redoc: they load their scripts from a CDN. The schema stays at /openapi.json.
    app = FastAPI(title="sop2cmd", summary="Lab-procedure text to catalog-valid robot commands",
                  lifespan=lifespan, docs_url=None, redoc_url=None)

    @app.exception_handler(RequestError)
    async def request_error(request: Request, error: RequestError) -> JSONResponse:
        return JSONResponse({"detail": error.message}, status_code=error.status)

    def authorized(credentials: HTTPAuthorizationCredentials | None = Depends(bearer)) -> None:
        if token is None:
            return
        # compare_digest: the time taken does not tell how much of a guessed token was right.
        if credentials is None or not hmac.compare_digest(credentials.credentials.encode(), token.encode()):
            from fastapi import HTTPException

            raise HTTPException(401, "missing or wrong bearer token (Authorization: Bearer <token>)",
                                headers={"WWW-Authenticate": "Bearer"})

    @app.get("/healthz")
    async def healthz() -> dict[str, Any]:
        return {"status": "ok", "queued": batcher.queued, **batcher.stats.as_dict()}

    @app.get("/v1/model", dependencies=[Depends(authorized)])
    async def model() -> dict[str, Any]:
        return served

    @app.post(
        "/v1/plans",
        dependencies=[Depends(authorized)],
        openapi_extra={"requestBody": {"required": True, "content": {
            "application/json": {"schema": _plan_request_model().model_json_schema()}}}},
    )
    async def plans(request: Request) -> JSONResponse:
        descriptions, single = parse_plan_request(await read_body_limited(request, limits.max_body_bytes), limits)
        try:
            checked = await batcher.submit(descriptions)
        except QueueFull as error:
            return JSONResponse({"detail": f"the server is busy: {error}"}, status_code=503, headers={"Retry-After": "1"})
        except BatcherStopped as error:
            return JSONResponse({"detail": str(error)}, status_code=503, headers={"Retry-After": "1"})
        except Exception:  # the batcher logged it; one failed batch answers 500 and the server goes on
            return JSONResponse({"detail": "decoding failed; the server log has the details"}, status_code=500)
        records = [public_record(plan, description) for plan, description in zip(checked, descriptions, strict=True)]
        headers = {"X-Sop2cmd-Model-Sha256": str(model_info.get("merged_weights_sha256"))}
        return JSONResponse(records[0] if single else {"results": records}, headers=headers)

    return app


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
    parser.add_argument("--max-new-tokens", type=int, default=384)
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
    from pipelines.serve.decode import DecodingConfig
    from pipelines.model.model_io import UnsafeModelArtifactError, load_model_and_tokenizer
    from pipelines.serve.predict import inference_device, predict_lines
    from pipelines.serve.batching import BatchingConfig

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
