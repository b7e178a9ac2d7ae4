"""The Dagster UI in a real browser: materialize the data assets from the asset graph and see them succeed.

Starts dagster-webserver and dagster-daemon on 127.0.0.1 with a temporary DAGSTER_HOME (holding the
shipped dagster.yaml, so the click goes through the run queue the daemon drains), drives Debian's
headless chromium with playwright, and keeps a screenshot under tests/artifacts/.
"""

from __future__ import annotations

import json
import shutil
import urllib.request
from pathlib import Path

import dagster as dg
import pytest

from tests.helpers import free_port, require_binary, user_workdir
from tests.support.services import REPO_ROOT, VENV_BIN, background, tail, wait_until

pytestmark = pytest.mark.slow

ARTIFACTS_DIR = REPO_ROOT / "tests" / "artifacts"
DATA_ASSETS = ("raw_training_data", "normalized_samples", "augmented_training_set")
CHROMIUM_ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
    "--disable-sync", "--no-first-run",
]


def _get_json(url: str, body: dict | None = None) -> dict:
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.loads(response.read())


def _location_status(base: str) -> str:
    query = (
        "{ workspaceOrError { ... on Workspace { locationEntries { locationOrLoadError "
        "{ __typename ... on PythonError { message } } } } } }"
    )
    try:
        entries = _get_json(f"{base}/graphql", {"query": query})["data"]["workspaceOrError"]["locationEntries"]
    except OSError:
        return "down"
    if not entries or entries[0]["locationOrLoadError"] is None:
        return "loading"
    loaded = entries[0]["locationOrLoadError"]
    return "ok" if loaded["__typename"] == "RepositoryLocation" else f"error: {loaded.get('message')}"


@pytest.fixture
def deployment(tmp_path: Path) -> dict:
    """A working directory like a user's checkout: params.yaml and a raw corpus, plus a fresh DAGSTER_HOME."""
    workdir = user_workdir(tmp_path)
    home = tmp_path / "dagster_home"
    home.mkdir()
    shutil.copy(REPO_ROOT / "dagster.yaml", home / "dagster.yaml")
    (workdir / "workspace.yaml").write_text(
        "load_from:\n  - python_module:\n      module_name: assets.definitions\n"
        f"      working_directory: {workdir}\n      location_name: sop2cmd\n",
        encoding="utf-8",
    )
    env = {
        "DAGSTER_HOME": str(home),
        "PYTHONPATH": str(REPO_ROOT),
        "SOP2CMD_LAKE": str(workdir / "lake"),
        "SOP2CMD_ARTIFACTS": str(workdir / "artifacts"),
        # One process per run: the run itself is what this test watches, not step parallelism.
        "SOP2CMD_EXECUTOR": "in_process",
        "HF_HUB_OFFLINE": "1",
    }
    return {"workdir": workdir, "home": home, "env": env}


def test_materialize_data_assets_from_the_asset_graph(deployment: dict, tmp_path: Path) -> None:
    chromium = require_binary("chromium")
    from playwright.sync_api import TimeoutError as PlaywrightTimeout
    from playwright.sync_api import sync_playwright

    workdir, env = deployment["workdir"], deployment["env"]
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    web_log, daemon_log = tmp_path / "webserver.log", tmp_path / "daemon.log"
    web_argv = [str(VENV_BIN / "dagster-webserver"), "-h", "127.0.0.1", "-p", str(port), "-w", "workspace.yaml"]
    daemon_argv = [str(VENV_BIN / "dagster-daemon"), "run", "-w", "workspace.yaml"]
    screenshot = ARTIFACTS_DIR / "ui_data_assets_materialized.png"

    with (
        background(web_argv, web_log, env=env, cwd=workdir),
        background(daemon_argv, daemon_log, env=env, cwd=workdir),
    ):
        wait_until(lambda: _location_status(base) != "down", 180, f"the webserver\n{tail(web_log)}")
        wait_until(lambda: _location_status(base) != "loading", 180, f"the code location\n{tail(web_log)}")
        assert _location_status(base) == "ok", tail(web_log)

        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
            try:
                page = browser.new_page(viewport={"width": 1600, "height": 1000})
                page.goto(f"{base}/locations/sop2cmd/asset-groups/data", wait_until="domcontentloaded", timeout=60_000)
                for name in DATA_ASSETS:
                    page.get_by_text(name, exact=True).first.wait_for(timeout=60_000)
                try:  # a first visit may show the community sign-up dialog
                    page.get_by_role("button", name="Skip").click(timeout=10_000)
                except PlaywrightTimeout:
                    pass
                page.get_by_role("button", name="Materialize all").click(timeout=30_000)
                page.get_by_text("Launched run").first.wait_for(timeout=60_000)

                def ui_shows_success() -> bool:
                    body = page.inner_text("body")
                    return body.count("Materialized") >= len(DATA_ASSETS) and "Materializing" not in body

                try:
                    wait_until(ui_shows_success, 420, "the asset graph to show every data asset materialized", 2)
                finally:
                    ARTIFACTS_DIR.mkdir(parents=True, exist_ok=True)
                    page.screenshot(path=str(screenshot), full_page=True)
                    shutil.copy(screenshot, tmp_path / screenshot.name)
            finally:
                browser.close()

    assert screenshot.stat().st_size > 10_000
    instance = dg.DagsterInstance.from_config(str(deployment["home"]))
    runs = instance.get_runs()
    assert [run.status for run in runs] == [dg.DagsterRunStatus.SUCCESS], tail(daemon_log)
    for name in DATA_ASSETS:
        assert instance.get_latest_materialization_event(dg.AssetKey(name)) is not None, name
    assert (workdir / "lake" / "augmented_training_set" / "_delta_log").is_dir()
