"""The HTTP application behind `python -m pipelines serve` (`pipelines.serve.server`): JSON in, JSON out.

- `POST /v1/plans` with `{"description": "..."}` answers `{"commands": [...]}` or `{"error": {...}}`;
  with `{"descriptions": [...]}` it answers `{"results": [...]}`, one such record per description, in order.
  Both are HTTP 200: the request was fine, and the record says whether the model produced a valid plan.
  An error names each broken rule (command index, command, field, rule) as `predict` does; the raw model
  output is written to the server log under the error's `log_id`, never returned.
- `GET /v1/model`: which model answers (weights hash, profile, data versions, deployed version and its
  promotion time), so a caller can record it; every `/v1/plans` answer also carries the weights hash in the
  `X-Sop2cmd-Model-Sha256` header.
- `GET /healthz`: liveness and batching counters (never needs the token).

Every answer is rendered by `pipelines.serve.plan_output`, which validates again right before rendering:
nothing unvalidated leaves the server. Descriptions that arrive together are decoded together
(`pipelines.serve.batching`). Bad requests get a 4xx naming what is wrong. When a token is given, `/v1/*`
requires `Authorization: Bearer <token>`.
"""

# No `from __future__ import annotations` here: FastAPI reads the handlers' annotations (Request, the bearer
# credentials) at definition time, and those names are imported inside create_app to keep `--help` fast.
import hmac
import json
import logging
import uuid
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

log = logging.getLogger("sop2cmd.serve")


@dataclass(frozen=True)
class ServeLimits:
    max_descriptions: int = 64  # per request
    # Enough for max_descriptions descriptions of the longest accepted length, even with every character
    # \uXXXX-escaped (6 bytes); a larger body is refused before it is read.
    max_body_bytes: int = 2 * 1024 * 1024


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
        expected = '{"description": str} or {"descriptions": [str, ...]}'
        raise RequestError(422, f"the body must be {expected} ({described})") from None
    if (request.description is None) == (request.descriptions is None):
        raise RequestError(422, 'give exactly one of "description" (a string) and "descriptions" (a list of strings)')
    single = request.description is not None
    descriptions = [request.description] if single else list(request.descriptions)
    if not descriptions:
        raise RequestError(422, '"descriptions" is empty; give at least one description')
    if len(descriptions) > limits.max_descriptions:
        raise RequestError(
            422,
            f'"descriptions" has {len(descriptions)} entries, '
            f"more than the limit of {limits.max_descriptions} per request",
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
            busy = {"detail": f"the server is busy: {error}"}
            return JSONResponse(busy, status_code=503, headers={"Retry-After": "1"})
        except BatcherStopped as error:
            return JSONResponse({"detail": str(error)}, status_code=503, headers={"Retry-After": "1"})
        except Exception:  # the batcher logged it; one failed batch answers 500 and the server goes on
            return JSONResponse({"detail": "decoding failed; the server log has the details"}, status_code=500)
        records = [public_record(plan, description) for plan, description in zip(checked, descriptions, strict=True)]
        headers = {"X-Sop2cmd-Model-Sha256": str(model_info.get("merged_weights_sha256"))}
        return JSONResponse(records[0] if single else {"results": records}, headers=headers)

    return app

