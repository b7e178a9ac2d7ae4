"""Shared fixtures for the operations tests: temporary raw corpora, Dagster instances, free ports."""

from __future__ import annotations

import json
import shutil
import socket
from collections.abc import Iterator
from pathlib import Path

import dagster as dg
import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def write_jsonl(path: Path, records: list[dict]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records), encoding="utf-8")
    return path


def sample_record(i: int) -> dict:
    return {
        "conversation": [
            {
                "input": f"行1:用通道1从样品板A{i % 12 + 1}吸取{10 + i}ul",
                "output": f"GetDiti(ditiType='50ul', channels=[1])\nAspirate(channels=[1], wells=['A{i % 12 + 1}'], volumes=[{10 + i}])",
            }
        ]
    }


@pytest.fixture
def raw_dir(tmp_path: Path) -> Path:
    directory = tmp_path / "raw"
    write_jsonl(directory / "a.jsonl", [sample_record(i) for i in range(3)])
    write_jsonl(directory / "b.jsonl", [sample_record(i) for i in range(3, 5)])
    return directory


@pytest.fixture
def instance() -> Iterator[dg.DagsterInstance]:
    with dg.instance_for_test() as test_instance:
        yield test_instance


def require_binary(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.skip(f"{name} is not installed (bash .ci/install_system_deps.sh installs it)")
    return path
