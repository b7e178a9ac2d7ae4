"""Promotion of a gated merged model into a versioned deploy directory, and rollback.

Layout under the deploy root (`$SOP2CMD_ARTIFACTS/deploy` by default):

    deploy/
      v0001-3f2a9c1e0b7d/      one folder per promoted model: a full copy of the merged model (weights,
      v0002-91c04e77aa12/      tokenizer, lineage.json), explained (`pipelines.model.model_card`), plus deployment.json
      current -> v0002-91c04e77aa12   relative symlink, the only thing promotion and rollback ever change
      history.jsonl            audit log, one line per switch of `current`

`current` is replaced in one `os.replace` of a fresh symlink, so a reader resolving it sees the old
version or the new one, never neither. Version folders are written completely (staging + rename)
before `current` can point at them, and never change afterwards.

Each deployment.json records the version that was current when it was promoted (`previous`), so
`rollback` walks back promotion by promotion: v3 -> v2 -> v1, with no state kept anywhere but in the
immutable version folders and the symlink. `python -m pipelines deploy rollback` is the one-liner.

`promote` refuses (PromotionRefused, nothing written) unless the regression gate passed on exactly the
weights being promoted.
"""

from __future__ import annotations

import argparse
import fcntl
import json
import os
import re
import shutil
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, TextIO

from pipelines.atomic_files import (
    TEMP_FILE,
    fsync_directory,
    replace_directory,
    staging_directory,
    unique_sibling,
    write_json_atomic,
)
from pipelines.lineage.manifest import MANIFEST_NAME, read_manifest, sha256_weights

DEPLOY_DIR = "deploy"
CURRENT = "current"
DEPLOYMENT_RECORD = "deployment.json"
HISTORY_FILE = "history.jsonl"
_LOCK_FILE = ".deploy.lock"
_VERSION = re.compile(r"^v(\d{4,})-[0-9a-f]{12}$")
# Dagster data versions carry the first 16 hex digits of the weights hash; a shorter prefix proves little.
_MIN_HASH_PREFIX = 16


class PromotionRefused(Exception):
    """The model must not be promoted (gate failed or not run, or the weights are not the ones judged)."""


class DeployError(Exception):
    """A rollback or switch cannot be done (nothing deployed, unknown or damaged version)."""


@dataclass(frozen=True)
class GateVerdict:
    """The regression gate's result, as the caller read it, and which merged weights it judged."""

    passed: bool
    description: str
    # The merged weights' sha256 (or a prefix of at least 16 hex digits) the evaluation ran on; None: unknown.
    evaluated_weights_sha256: str | None


@dataclass(frozen=True)
class Deployment:
    version: str
    path: Path
    record: dict[str, Any]

    @property
    def weights_sha256(self) -> str:
        return str(self.record["merged_weights_sha256"])

    @property
    def previous(self) -> str | None:
        return self.record.get("previous")


@dataclass(frozen=True)
class PromotionResult:
    deployment: Deployment
    promoted: bool  # False: these weights were already the current deployment, nothing changed
    previous: str | None


def deploy_root(artifacts_root: Path) -> Path:
    return Path(artifacts_root) / DEPLOY_DIR


# --- reading ----------------------------------------------------------------------------------------------


def read_deployment(root: Path, version: str) -> Deployment:
    path = Path(root) / version
    record_path = path / DEPLOYMENT_RECORD
    if not _VERSION.match(version) or not record_path.is_file():
        raise DeployError(f"{path} is not a deployment (no {DEPLOYMENT_RECORD})")
    return Deployment(version, path, json.loads(record_path.read_text(encoding="utf-8")))


def current_version(root: Path) -> str | None:
    pointer = Path(root) / CURRENT
    if not os.path.lexists(pointer):
        return None
    if not pointer.is_symlink():
        raise DeployError(f"{pointer} is not a symlink; it must only be changed by promote/rollback")
    return os.readlink(pointer).rstrip("/").split("/")[-1]


def current_deployment(root: Path) -> Deployment | None:
    version = current_version(root)
    return None if version is None else read_deployment(root, version)


def list_deployments(root: Path) -> list[Deployment]:
    root = Path(root)
    if not root.is_dir():
        return []
    versions = sorted(p.name for p in root.iterdir() if _VERSION.match(p.name) and (p / DEPLOYMENT_RECORD).is_file())
    return [read_deployment(root, version) for version in versions]


def read_history(root: Path) -> list[dict[str, Any]]:
    path = Path(root) / HISTORY_FILE
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


# --- writing ----------------------------------------------------------------------------------------------


@contextmanager
def _deploy_lock(root: Path) -> Iterator[None]:
    """One promotion or rollback at a time; a lock file, since atomic_files locks the root directory itself."""
    root.mkdir(parents=True, exist_ok=True)
    fd = os.open(root / _LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o666)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing releases the flock, as does the kernel on any death


def _switch_current(root: Path, version: str) -> None:
    """Point `current` at `version` in one atomic rename of a new relative symlink."""
    pointer = root / CURRENT
    if os.path.lexists(pointer) and not pointer.is_symlink():
        raise DeployError(f"{pointer} is not a symlink; it must only be changed by promote/rollback")
    temp = unique_sibling(pointer, TEMP_FILE)
    os.symlink(version, temp)
    try:
        os.replace(temp, pointer)
    except BaseException:
        temp.unlink(missing_ok=True)
        raise
    fsync_directory(root)


def _append_history(root: Path, entry: dict[str, Any]) -> None:
    with open(root / HISTORY_FILE, "a", encoding="utf-8") as handle:
        handle.write(json.dumps(entry, ensure_ascii=False, sort_keys=True) + "\n")
        handle.flush()
        os.fsync(handle.fileno())


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def _next_version(root: Path, weights_sha256: str) -> str:
    numbers = [int(m.group(1)) for p in root.iterdir() if (m := _VERSION.match(p.name))]
    return f"v{max(numbers, default=0) + 1:04d}-{weights_sha256[:12]}"


def _check_gate(gate: GateVerdict, merged_dir: Path, weights_sha256: str) -> None:
    if not gate.passed:
        raise PromotionRefused(f"the regression gate did not pass ({gate.description}); {merged_dir} is not promoted")
    judged = gate.evaluated_weights_sha256
    if not judged or len(judged) < _MIN_HASH_PREFIX:
        raise PromotionRefused(
            f"cannot tell which merged weights the regression gate judged, so {merged_dir} is not promoted; "
            "materialize merged_model, regression_metrics and its gate in Dagster, then deployed_model"
        )
    if not weights_sha256.startswith(judged):
        raise PromotionRefused(
            f"{merged_dir} holds weights {weights_sha256[:16]}..., but the regression gate judged {judged[:16]}...: "
            "the merged model changed since it was evaluated; materialize regression_metrics again"
        )


def rolled_back_weights(root: Path) -> set[str]:
    """Weights a rollback moved `current` away from, and that nobody has put back since (by rollback or promotion).

    A rollback is a decision about a model; the next ordinary `make run` or retrain, which re-merges the same
    weights and passes the same gate, must not quietly undo it.
    """
    weights: set[str] = set()
    for entry in read_history(root):
        try:
            if entry.get("action") == "rollback" and entry.get("from"):
                weights.add(read_deployment(root, entry["from"]).weights_sha256)
            if entry.get("version"):
                weights.discard(read_deployment(root, entry["version"]).weights_sha256)
        except DeployError:
            continue  # a version folder deleted by hand: nothing of it can be promoted again by accident
    return weights


def promote(
    merged_dir: Path,
    root: Path,
    gate: GateVerdict,
    *,
    evaluation: Any = None,
    run_id: str | None = None,
    promote_rolled_back: bool = False,
) -> PromotionResult:
    """Copy `merged_dir` into a new version folder under `root` and point `current` at it.

    Refuses (PromotionRefused, `root` untouched) unless `gate` passed on exactly these weights, and, unless
    `promote_rolled_back`, when a rollback moved away from these weights. When the current deployment already
    holds these weights nothing changes (`promoted` is False). `evaluation`
    (`pipelines.model.model_card.EvaluationSummary`) goes into deployment.json and the model card.
    """
    from pipelines.model.model_card import explain_model_dir

    merged_dir, root = Path(merged_dir), Path(root)
    if not (merged_dir / MANIFEST_NAME).is_file():
        raise PromotionRefused(
            f"{merged_dir} has no {MANIFEST_NAME}; only a merged model written by sop2cmd is promoted"
        )
    weights_sha256 = sha256_weights(merged_dir)
    _check_gate(gate, merged_dir, weights_sha256)

    with _deploy_lock(root):
        current = current_deployment(root)
        if current is not None and current.weights_sha256 == weights_sha256:
            return PromotionResult(current, promoted=False, previous=current.previous)
        if not promote_rolled_back and weights_sha256 in rolled_back_weights(root):
            raise PromotionRefused(
                f"weights {weights_sha256[:16]}... were rolled back from "
                f"{current.version if current else 'a version'} "
                f"(see {root / HISTORY_FILE}); to serve them again, roll forward (`python -m pipelines deploy "
                "rollback --to <version>`) or materialize deployed_model with config promote_rolled_back: true"
            )
        version = _next_version(root, weights_sha256)
        target = root / version
        with staging_directory(target) as staging:
            shutil.copytree(merged_dir, staging, dirs_exist_ok=True)
            # The merged dir can be replaced by a new merge while it is copied: promote only what was judged.
            copied = sha256_weights(staging)
            if copied != weights_sha256:
                raise PromotionRefused(
                    f"{merged_dir} changed while it was copied "
                    f"(weights {copied[:16]}..., judged {weights_sha256[:16]}...)"
                )
            manifest = read_manifest(staging)
            record = {
                "version": version,
                "promoted_at": _now(),
                "promoted_at_ns": time.time_ns(),
                "run_id": run_id,
                "source_dir": str(merged_dir.resolve()),
                "merged_weights_sha256": weights_sha256,
                "previous": current.version if current else None,
                "gate": asdict(gate),
                "evaluation": evaluation.to_dict() if evaluation is not None else None,
                "lineage": {key: manifest.get(key) for key in ("profile", "adapter_sha256", "adapter_dir",
                                                                "base_model_dir", "data", "git", "training_config")},
            }
            explain_model_dir(staging, manifest=manifest, evaluation=evaluation, deployment=record, card_path=target)
            # Written last: a folder with a deployment.json is complete (the rename below publishes it whole).
            write_json_atomic(staging / DEPLOYMENT_RECORD, record)
            replace_directory(staging, target)
        _switch_current(root, version)
        _append_history(root, {"action": "promote", "version": version, "from": record["previous"],
                               "at": record["promoted_at"], "run_id": run_id})
    return PromotionResult(read_deployment(root, version), promoted=True, previous=record["previous"])


def rollback(root: Path, to: str | None = None) -> tuple[Deployment, Deployment]:
    """Point `current` back at the version promoted before it (or at `to`); returns (from, to).

    The target's weights are re-hashed first: a damaged copy is refused rather than served.
    """
    root = Path(root)
    with _deploy_lock(root):
        current = current_deployment(root)
        if current is None:
            raise DeployError(f"nothing is deployed under {root} ({CURRENT} does not exist)")
        target_version = to or current.previous
        if target_version is None:
            raise DeployError(
                f"{current.version} was the first promotion under {root}; there is nothing to roll back to"
            )
        if target_version == current.version:
            raise DeployError(f"{target_version} is already current")
        try:
            target = read_deployment(root, target_version)
        except DeployError as error:
            raise DeployError(f"cannot roll back to {target_version}: {error}") from error
        actual = sha256_weights(target.path)
        if actual != target.weights_sha256:
            raise DeployError(f"cannot roll back to {target_version}: its weights hash is {actual[:16]}..., "
                              f"promoted as {target.weights_sha256[:16]}... (the copy was modified)")
        _switch_current(root, target.version)
        _append_history(root, {"action": "rollback", "version": target.version, "from": current.version, "at": _now()})
    return current, target


# --- CLI: python -m pipelines deploy {status,list,rollback} ----------------------------------------------


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--root", type=Path, default=None,
                        help="deploy directory (default: $SOP2CMD_ARTIFACTS/deploy, else artifacts/deploy)")
    sub = parser.add_subparsers(dest="deploy_command", required=True)
    sub.add_parser("status", help="the current deployment: version, weights hash, gate metrics")
    sub.add_parser("list", help="every promoted version, oldest first; * marks the current one")
    rollback_parser = sub.add_parser("rollback", help="point current back at the version promoted before it")
    rollback_parser.add_argument(
        "--to", default=None, metavar="VERSION", help="roll back (or forward) to this version instead"
    )


def _default_root() -> Path:
    from pipelines.config import artifacts_root

    return deploy_root(artifacts_root())


def _describe(deployment: Deployment) -> str:
    evaluation = deployment.record.get("evaluation") or {}
    gate = evaluation.get("gate_metadata") or {}
    rates = ", ".join(
        f"{k} {gate[k]:.3f}" for k in ("json_valid_rate", "catalog_valid_rate", "exact_match") if k in gate
    )
    return (
        f"{deployment.version}  weights sha256 {deployment.weights_sha256[:16]}...  "
        f"promoted {deployment.record.get('promoted_at')}"
        + (f"  gate: {rates}" if rates else "")
    )


def run(args: argparse.Namespace, stdout: TextIO | None = None, stderr: TextIO | None = None) -> int:
    out, err = stdout or sys.stdout, stderr or sys.stderr
    root = args.root or _default_root()
    try:
        if args.deploy_command == "status":
            current = current_deployment(root)
            if current is None:
                print(f"nothing deployed under {root}", file=out)
                return 1
            print(_describe(current), file=out)
            print(f"path {root / CURRENT} -> {current.path}", file=out)
        elif args.deploy_command == "list":
            current = current_version(root)
            for deployment in list_deployments(root):
                print(("* " if deployment.version == current else "  ") + _describe(deployment), file=out)
        elif args.deploy_command == "rollback":
            before, after = rollback(root, args.to)
            print(f"rolled back {root / CURRENT}: {before.version} -> {after.version}", file=out)
    except DeployError as error:
        print(f"deploy: {error}", file=err)
        return 1
    return 0
