"""`python -m pipelines serve`: a real server process, a real HTTP client, the same gate as `predict`.

The model is a scripted tiny model (`build_scripted_model`): it writes a valid plan for every description but
one, and for that one a plan that parses but breaks tip capacity, so both the answering and the refusing path
run on real generation and give the same output on every CPU. It is installed where the deploy step puts the
deployed model (`$SOP2CMD_ARTIFACTS/deploy/current`), so the default `--model` is what gets served.

The batcher's own tests drive it in-process with a decode function that blocks until released, so which
descriptions share a batch is fixed by construction, not by timing.
"""

from __future__ import annotations

import asyncio
import http.client
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from data_contracts.commands import Command
from data_contracts.forms import render_json_commands
from pipelines.model.plan_layout import render_commands
from tests.helpers import REPO_ROOT

VALID_DESCRIPTION = "Wait 5 minutes"
VALID_PLAN = [Command(func_name="Delay", func_parameters={"seconds": 300})]
BAD_DESCRIPTION = "行1:用通道1从P1的A1吸取50微升，超出10ul枪头"
BAD_PLAN = [  # 50 ul into a 10 ul tip: the grammar allows it, only the validator catches it
    Command(func_name="GetDiti", func_parameters={"ditiType": "10ul", "channels": [1]}),
    Command(func_name="Aspirate", func_parameters={"channels": [1], "labware": "P1", "wells": ["A1"], "vols": [50]}),
]
VALID_RECORD = json.loads(render_json_commands(VALID_PLAN))
PROMOTED_AT = "2026-01-02T03:04:05+00:00"
DEPLOYED_VERSION = "v0001-0123456789ab"
TOKEN = "s3cret-token-for-tests"
MAX_BODY_BYTES = 16 * 1024
MAX_DESCRIPTIONS = 8
STARTUP_TIMEOUT_S = 300  # loading torch and transformers on a busy 2-core machine
REQUEST_TIMEOUT_S = 300


# --- a real server ---------------------------------------------------------------------------------------


@dataclass
class Server:
    process: subprocess.Popen
    url: str
    log_path: Path

    def log(self) -> str:
        return self.log_path.read_text(encoding="utf-8", errors="replace")


def start_server(log_path: Path, *args: str, env: dict[str, str] | None = None) -> Server:
    """`python -m pipelines serve --port 0 ARGS`; returns once it listens (the log names the port)."""
    command = [sys.executable, "-m", "pipelines", "serve", "--port", "0", *args]
    environment = {key: value for key, value in os.environ.items() if key != "SOP2CMD_SERVE_TOKEN"}
    with open(log_path, "wb") as log:  # a file, not a pipe: a pipe nobody drains would block the server's logging
        process = subprocess.Popen(command, cwd=REPO_ROOT, stdout=log, stderr=subprocess.STDOUT,
                                   env={**environment, "OMP_NUM_THREADS": "1", **(env or {})})
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    while time.monotonic() < deadline:
        # The port is logged when it is bound, a moment before it accepts connections: wait for /healthz too.
        found = re.search(r"Uvicorn running on (http://[\d.]+:\d+)", log_path.read_text(errors="replace"))
        if found:
            try:
                with urllib.request.urlopen(found.group(1) + "/healthz", timeout=REQUEST_TIMEOUT_S):
                    return Server(process, found.group(1), log_path)
            except urllib.error.URLError:
                pass
        if process.poll() is not None:
            raise AssertionError(f"server exited with {process.returncode}:\n{log_path.read_text(errors='replace')}")
        time.sleep(0.2)
    process.kill()
    raise AssertionError(f"server did not start within {STARTUP_TIMEOUT_S}s:\n{log_path.read_text(errors='replace')}")


def stop_server(server: Server) -> int:
    if server.process.poll() is None:
        server.process.send_signal(signal.SIGTERM)
        try:
            server.process.wait(timeout=120)
        except subprocess.TimeoutExpired:
            server.process.kill()
            server.process.wait()
    return server.process.returncode


def call(server: Server, method: str, path: str, body: Any = None, raw: bytes | None = None,
         headers: dict[str, str] | None = None) -> tuple[int, Any, Any]:
    """(status, headers, parsed JSON body) of one request; `body` is sent as JSON, `raw` as it is."""
    data = raw if raw is not None else (None if body is None else json.dumps(body, ensure_ascii=False).encode("utf-8"))
    request = urllib.request.Request(server.url + path, data=data, method=method,
                                     headers={"Content-Type": "application/json", **(headers or {})})
    try:
        with urllib.request.urlopen(request, timeout=REQUEST_TIMEOUT_S) as response:
            return response.status, response.headers, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, error.headers, json.loads(error.read())


@pytest.fixture(scope="module")
def artifacts(tmp_path_factory) -> Path:
    """An artifacts root laid out as `pipelines.serve.deploy` leaves it: deploy/current -> a version folder holding
    the scripted model, its lineage.json and its deployment.json."""
    from pipelines.lineage.manifest import sha256_weights
    from pipelines.model.tiny_model import build_scripted_model

    root = tmp_path_factory.mktemp("artifacts")
    model_dir = build_scripted_model(
        root / "deploy" / DEPLOYED_VERSION,
        default_output=render_commands(VALID_PLAN),
        triggered_output=render_commands(BAD_PLAN),
        trigger_description=BAD_DESCRIPTION,
        default_description=VALID_DESCRIPTION,
    )
    weights = sha256_weights(model_dir)
    lineage = {
        "kind": "merged_model",
        "merged_weights_sha256": weights,
        "adapter_sha256": "a" * 64,
        "profile": "tiny-test",
        "data": {"table": "augmented_training_set", "delta_version": 7, "content_hash": "c" * 64,
                 "raw_files_md5": {"training_data.jsonl": "d" * 32}},
        "git": {"commit": "e" * 40, "dirty": False},
    }
    deployment = {"version": DEPLOYED_VERSION, "promoted_at": PROMOTED_AT, "merged_weights_sha256": weights,
                  "previous": None, "run_id": "run-1"}
    (model_dir / "lineage.json").write_text(json.dumps(lineage), encoding="utf-8")
    (model_dir / "deployment.json").write_text(json.dumps(deployment), encoding="utf-8")
    (root / "deploy" / "current").symlink_to(DEPLOYED_VERSION)  # relative, as pipelines.serve.deploy makes it
    return root


@pytest.fixture(scope="module")
def server(artifacts: Path, tmp_path_factory) -> Iterator[Server]:
    log_path = tmp_path_factory.mktemp("serve") / "server.log"
    running = start_server(
        log_path, "--max-new-tokens", "160", "--max-batch-size", "8", "--max-wait-ms", "20",
        "--max-body-bytes", str(MAX_BODY_BYTES), "--max-descriptions", str(MAX_DESCRIPTIONS),
        env={"SOP2CMD_ARTIFACTS": str(artifacts)},
    )
    yield running
    stop_server(running)


# --- endpoints ---------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_healthz(server):
    status, _, body = call(server, "GET", "/healthz")
    assert status == 200 and body["status"] == "ok"


@pytest.mark.slow
def test_model_endpoint_names_the_deployed_model(server, artifacts):
    from pipelines.lineage.manifest import sha256_weights

    status, _, body = call(server, "GET", "/v1/model")
    assert status == 200
    assert body["merged_weights_sha256"] == sha256_weights(artifacts / "deploy" / "current")
    assert body["lineage_verified"] is True
    assert body["profile"] == "tiny-test"
    assert body["data"]["delta_version"] == 7 and body["data"]["table"] == "augmented_training_set"
    assert body["promoted_at"] == PROMOTED_AT
    assert body["deployment"] == {"version": DEPLOYED_VERSION, "promoted_at": PROMOTED_AT, "previous": None,
                                  "run_id": "run-1"}
    assert body["model_dir"] == str(artifacts / "deploy" / "current")
    assert body["resolved_dir"] == str((artifacts / "deploy" / DEPLOYED_VERSION).resolve())
    assert body["serving"]["max_batch_size"] == 8 and body["serving"]["token_required"] is False


@pytest.mark.slow
def test_one_description_gets_its_validated_plan(server):
    status, headers, body = call(server, "POST", "/v1/plans", {"description": VALID_DESCRIPTION})
    assert status == 200 and body == VALID_RECORD
    _, _, model = call(server, "GET", "/v1/model")
    assert headers["X-Sop2cmd-Model-Sha256"] == model["merged_weights_sha256"]


@pytest.mark.slow
def test_a_plan_the_validator_rejects_comes_back_as_an_error_never_as_commands(server):
    status, _, body = call(server, "POST", "/v1/plans", {"description": BAD_DESCRIPTION})
    assert status == 200 and set(body) == {"error"}
    error = body["error"]
    assert "raw_output" not in error
    assert [(i["rule"], i["field"], i["command"]) for i in error["issues"]] == [("tip_capacity", "vols", "Aspirate")]
    assert "rule tip_capacity" in error["message"]
    # The raw output is kept server-side, in the log line that carries the error's log_id.
    lines = [line for line in server.log().splitlines() if error["log_id"] in line]
    assert len(lines) == 1
    logged = json.loads(lines[0].split("plan rejected ", 1)[1])
    assert logged["raw_output"] == render_commands(BAD_PLAN) and logged["description"] == BAD_DESCRIPTION


@pytest.mark.slow
def test_several_descriptions_get_one_record_each_in_order(server):
    descriptions = [BAD_DESCRIPTION, VALID_DESCRIPTION, VALID_DESCRIPTION, BAD_DESCRIPTION]
    status, _, body = call(server, "POST", "/v1/plans", {"descriptions": descriptions})
    assert status == 200 and len(body["results"]) == 4
    assert [record.get("error", {}).get("issues", [{}])[0].get("rule") for record in body["results"]] == [
        "tip_capacity", None, None, "tip_capacity"]
    assert body["results"][1] == body["results"][2] == VALID_RECORD


# --- bad input: a 4xx naming what is wrong, and the server keeps serving -------------------------------------

BAD_REQUESTS = [
    ("missing", b"{}", 422, "exactly one of"),
    ("empty", json.dumps({"description": ""}).encode(), 422, '"description" is empty'),
    ("blank", json.dumps({"description": " \n\t"}).encode(), 422, '"description" is empty'),
    ("empty_list", json.dumps({"descriptions": []}).encode(), 422, '"descriptions" is empty'),
    ("empty_in_list", json.dumps({"descriptions": ["Wait 5 minutes", ""]}).encode(), 422,
     '"descriptions"[1] is empty'),
    ("both", json.dumps({"description": "a", "descriptions": ["b"]}).encode(), 422, "exactly one of"),
    ("number", json.dumps({"description": 5}).encode(), 422, "description: Input should be a valid string"),
    ("string_for_list", json.dumps({"descriptions": "Wait"}).encode(), 422,
     "descriptions: Input should be a valid array"),
    ("number_in_list", json.dumps({"descriptions": ["a", 3]}).encode(), 422,
     "descriptions.1: Input should be a valid string"),
    ("null", json.dumps({"description": None}).encode(), 422, "exactly one of"),
    ("top_level_list", json.dumps(["Wait 5 minutes"]).encode(), 422, "Input should be an object"),
    ("typo", json.dumps({"descripton": "Wait"}).encode(), 422, "descripton: Extra inputs are not permitted"),
    ("truncated_json", b'{"description": "Wait', 400, "not valid JSON"),
    ("not_json", b"Wait 5 minutes", 400, "not valid JSON"),
    ("empty_body", b"", 400, "not valid JSON"),
    ("not_utf8", b'{"description": "\xff\xfe"}', 400, "not valid JSON"),
    ("deeply_nested", b"[" * 5000 + b"]" * 5000, 400, "not valid JSON"),
    ("too_long", json.dumps({"description": "x" * 4001}).encode(), 422,
     "4001 characters long, more than the limit of 4000"),
    ("too_many", json.dumps({"descriptions": ["Wait"] * (MAX_DESCRIPTIONS + 1)}).encode(), 422,
     f"{MAX_DESCRIPTIONS + 1} entries, more than the limit of {MAX_DESCRIPTIONS}"),
    ("too_big", json.dumps({"description": "x" * (MAX_BODY_BYTES + 1)}).encode(), 413,
     f"more than the limit of {MAX_BODY_BYTES}"),
]


@pytest.mark.slow
@pytest.mark.parametrize("name,raw,status,message", BAD_REQUESTS, ids=[case[0] for case in BAD_REQUESTS])
def test_bad_input_gets_a_clear_4xx_and_the_server_keeps_serving(server, name, raw, status, message):
    got_status, _, body = call(server, "POST", "/v1/plans", raw=raw)
    assert got_status == status, body
    assert message in body["detail"], body
    assert call(server, "GET", "/healthz")[0] == 200


@pytest.mark.slow
def test_a_chunked_body_over_the_limit_is_refused_while_reading(server):
    host, port = server.url.removeprefix("http://").split(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=REQUEST_TIMEOUT_S)
    chunks = [b'{"description": "'] + [b"x" * 4096] * 8 + [b'"}']  # no Content-Length: the server must count
    connection.request("POST", "/v1/plans", body=iter(chunks), encode_chunked=True,
                       headers={"Content-Type": "application/json"})
    response = connection.getresponse()
    assert response.status == 413 and "limit" in json.loads(response.read())["detail"]
    connection.close()
    assert call(server, "POST", "/v1/plans", {"description": VALID_DESCRIPTION})[2] == VALID_RECORD


@pytest.mark.slow
def test_unknown_paths_and_methods_are_4xx(server):
    assert call(server, "GET", "/v1/plans")[0] == 405
    assert call(server, "GET", "/v2/nothing")[0] == 404


# --- load ---------------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_concurrent_clients_are_all_answered_correctly_and_the_server_stays_up(server):
    """32 clients x 4 requests at once, valid and rejected plans mixed in the same batches: every request gets
    the answer for its own description (a mix-up between batch rows would show), none is lost."""
    clients, per_client = 32, 4
    _, _, before = call(server, "GET", "/healthz")

    def client(number: int) -> list[tuple[str, int, Any]]:
        answers = []
        for request in range(per_client):
            description = BAD_DESCRIPTION if (number + request) % 3 == 0 else VALID_DESCRIPTION
            status, _, body = call(server, "POST", "/v1/plans", {"description": description})
            answers.append((description, status, body))
        return answers

    with ThreadPoolExecutor(max_workers=clients) as pool:
        answers = [answer for answers in pool.map(client, range(clients)) for answer in answers]
    assert len(answers) == clients * per_client
    for description, status, body in answers:
        assert status == 200
        if description == VALID_DESCRIPTION:
            assert body == VALID_RECORD
        else:
            assert body["error"]["issues"][0]["rule"] == "tip_capacity" and "commands" not in body
    status, _, after = call(server, "GET", "/healthz")
    assert status == 200 and after["queued"] == 0
    assert after["decoded"] - before["decoded"] == clients * per_client  # each description decoded exactly once
    assert after["failed_batches"] == before["failed_batches"]
    assert after["largest_batch"] <= 8


# --- startup and safety ----------------------------------------------------------------------------------


def run_serve(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    environment = {key: value for key, value in os.environ.items() if key != "SOP2CMD_SERVE_TOKEN"}
    return subprocess.run([sys.executable, "-m", "pipelines", "serve", "--port", "0", *args], cwd=REPO_ROOT,
                          capture_output=True, text=True, timeout=STARTUP_TIMEOUT_S,
                          env={**environment, **(env or {})})


def test_refuses_a_non_loopback_address_without_a_token(tmp_path):
    done = run_serve("--host", "0.0.0.0", env={"SOP2CMD_ARTIFACTS": str(tmp_path)})
    assert done.returncode == 2 and "refusing to serve on 0.0.0.0 without a token" in done.stderr
    assert "SOP2CMD_SERVE_TOKEN" in done.stderr


def test_refuses_a_blank_token(tmp_path):
    done = run_serve(env={"SOP2CMD_ARTIFACTS": str(tmp_path), "SOP2CMD_SERVE_TOKEN": "  "})
    assert done.returncode == 2 and "SOP2CMD_SERVE_TOKEN is set but empty" in done.stderr


def test_missing_deployed_model_is_a_clear_error(tmp_path):
    done = run_serve(env={"SOP2CMD_ARTIFACTS": str(tmp_path)})
    assert done.returncode == 2
    assert f"no deployed model at {tmp_path / 'deploy' / 'current'}" in done.stderr and "--model" in done.stderr


@pytest.mark.parametrize("record", ["lineage.json", "deployment.json"])
def test_refuses_weights_that_do_not_match_their_records(artifacts, tmp_path, record):
    model_dir = shutil.copytree(artifacts / "deploy" / DEPLOYED_VERSION, tmp_path / "tampered")
    recorded = json.loads((model_dir / record).read_text())
    (model_dir / record).write_text(json.dumps({**recorded, "merged_weights_sha256": "0" * 64}))
    done = run_serve("--model", str(model_dir))
    assert done.returncode == 2 and "refusing to serve it" in done.stderr
    assert f"{record} records {'0' * 64}" in done.stderr


def test_is_loopback():
    from pipelines.serve.server import is_loopback

    assert all(is_loopback(host) for host in ("127.0.0.1", "127.0.0.2", "::1", "[::1]", "localhost"))
    assert not any(is_loopback(host) for host in ("0.0.0.0", "::", "192.168.1.5", "example.org"))


@pytest.mark.slow
def test_token_is_required_when_set_and_the_server_stops_cleanly(artifacts, tmp_path):
    running = start_server(tmp_path / "server.log", "--model", str(artifacts / "deploy" / "current"),
                           "--max-new-tokens", "160", env={"SOP2CMD_SERVE_TOKEN": TOKEN})
    try:
        assert call(running, "GET", "/healthz")[0] == 200  # probes need no token
        for path, body in (("/v1/model", None), ("/v1/plans", {"description": VALID_DESCRIPTION})):
            method = "GET" if body is None else "POST"
            status, headers, answer = call(running, method, path, body)
            assert status == 401 and headers["WWW-Authenticate"] == "Bearer" and "bearer token" in answer["detail"]
            assert call(running, method, path, body, headers={"Authorization": "Bearer wrong"})[0] == 401
            assert call(running, method, path, body, headers={"Authorization": TOKEN})[0] == 401  # no scheme
        status, _, answer = call(running, "POST", "/v1/plans", {"description": VALID_DESCRIPTION},
                                 headers={"Authorization": f"Bearer {TOKEN}"})
        assert status == 200 and answer == VALID_RECORD
        assert call(running, "GET", "/v1/model", headers={"Authorization": f"Bearer {TOKEN}"})[2]["serving"][
            "token_required"] is True
    finally:
        code = stop_server(running)
    # uvicorn shuts down gracefully on SIGTERM, then re-raises the signal so the exit status tells how it ended.
    assert code in (0, -signal.SIGTERM), running.log()
    assert "Application shutdown complete." in running.log()
    assert TOKEN not in running.log()


# --- the batcher, in-process -----------------------------------------------------------------------------


class GatedDecode:
    """Upper-cases its items; the first call blocks until `release` is set, so later items pile up meanwhile."""

    def __init__(self, fail_on: str | None = None) -> None:
        self.calls: list[list[str]] = []
        self.entered = threading.Event()
        self.release = threading.Event()
        self.fail_on = fail_on

    def __call__(self, items: list[str]) -> list[str]:
        self.calls.append(list(items))
        if len(self.calls) == 1:
            self.entered.set()
            assert self.release.wait(timeout=60)
        if self.fail_on in items:
            raise RuntimeError(f"cannot decode {self.fail_on}")
        return [item.upper() for item in items]


async def _until(condition) -> None:
    while not condition():
        await asyncio.sleep(0.001)


def _batcher(decode, **config):
    from pipelines.serve.batching import BatchingConfig, MicroBatcher

    return MicroBatcher(decode, BatchingConfig(**{"max_wait_s": 0.0, **config}))


def test_descriptions_that_arrive_while_a_batch_decodes_form_the_next_batches():
    async def scenario():
        decode = GatedDecode()
        batcher = _batcher(decode, max_batch_size=4)
        await batcher.start()
        first = asyncio.create_task(batcher.submit(["a"]))
        await asyncio.get_running_loop().run_in_executor(None, decode.entered.wait)
        second = asyncio.create_task(batcher.submit(["b", "c", "d"]))
        third = asyncio.create_task(batcher.submit(["e", "f"]))
        await _until(lambda: batcher.queued == 5)
        decode.release.set()
        results = await asyncio.gather(first, second, third)
        await batcher.stop()
        return decode.calls, results, batcher.stats.as_dict()

    calls, results, stats = asyncio.run(scenario())
    assert calls == [["a"], ["b", "c", "d", "e"], ["f"]]
    assert results == [["A"], ["B", "C", "D"], ["E", "F"]]
    assert stats == {"batches": 3, "decoded": 6, "largest_batch": 4, "failed_batches": 0}


def test_batch_size_one_decodes_one_at_a_time():
    async def scenario():
        decode = GatedDecode()
        batcher = _batcher(decode, max_batch_size=1)
        await batcher.start()
        first = asyncio.create_task(batcher.submit(["a"]))
        await asyncio.get_running_loop().run_in_executor(None, decode.entered.wait)
        rest = asyncio.create_task(batcher.submit(["b", "c"]))
        await _until(lambda: batcher.queued == 2)
        decode.release.set()
        results = await asyncio.gather(first, rest)
        await batcher.stop()
        return decode.calls, results

    calls, results = asyncio.run(scenario())
    assert calls == [["a"], ["b"], ["c"]] and results == [["A"], ["B", "C"]]


def test_a_failing_batch_fails_its_callers_only_and_the_batcher_goes_on():
    async def scenario():
        decode = GatedDecode(fail_on="boom")
        batcher = _batcher(decode, max_batch_size=8)
        await batcher.start()
        decode.release.set()
        with pytest.raises(RuntimeError, match="cannot decode boom"):
            await batcher.submit(["ok", "boom"])
        after = await batcher.submit(["fine"])
        await batcher.stop()
        return after, batcher.stats.as_dict()

    after, stats = asyncio.run(scenario())
    assert after == ["FINE"] and stats["failed_batches"] == 1 and stats["decoded"] == 1


def test_a_full_queue_is_refused_at_once_and_stop_fails_what_waits():
    from pipelines.serve.batching import BatcherStopped, QueueFull

    async def scenario():
        decode = GatedDecode()
        batcher = _batcher(decode, max_batch_size=8, max_queued=2)
        await batcher.start()
        first = asyncio.create_task(batcher.submit(["a"]))
        await asyncio.get_running_loop().run_in_executor(None, decode.entered.wait)
        waiting = asyncio.create_task(batcher.submit(["b", "c"]))
        await _until(lambda: batcher.queued == 2)
        with pytest.raises(QueueFull, match="limit 2"):
            await batcher.submit(["d"])
        await batcher.stop()
        decode.release.set()
        return await asyncio.gather(first, waiting, return_exceptions=True)

    first, waiting = asyncio.run(scenario())
    assert isinstance(first, BatcherStopped) and isinstance(waiting, BatcherStopped)


def test_decode_returning_the_wrong_number_of_results_fails_rather_than_mispairs():
    async def scenario():
        batcher = _batcher(lambda items: items[:-1], max_batch_size=8)
        await batcher.start()
        try:
            await batcher.submit(["a", "b"])
        finally:
            await batcher.stop()

    with pytest.raises(RuntimeError, match="2 items"):
        asyncio.run(scenario())
