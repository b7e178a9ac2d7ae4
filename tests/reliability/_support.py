"""Helpers shared by the reliability tests: the repo root, subprocess commands that import our packages."""

from __future__ import annotations

import os
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
FIXTURES = Path(__file__).parent.parent / "fixtures"
WORKERS = Path(__file__).parent / "workers"


def subprocess_env(**extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO_ROOT), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    env.setdefault("HF_HUB_OFFLINE", "1")
    env.setdefault("TOKENIZERS_PARALLELISM", "false")
    env.update(extra)
    return env


def worker_command(name: str, *args: object) -> list[str]:
    return [sys.executable, str(WORKERS / f"{name}.py"), *(str(a) for a in args)]
