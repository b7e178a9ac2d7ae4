"""The command distribution for asset metadata: table rows, a PNG bar chart, and the chart inline as markdown."""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

import pandas as pd

# The distribution columns the table shows, in order: column -> (type, what it counts).
_COLUMNS = {
    "command": ("string", "command"),
    "samples": ("int", "samples"),
    "train_sources": ("int", "train sources"),
    "eval_sources": ("int", "eval sources"),
    "train_rows": ("int", "train rows (unweighted exposure)"),
    "exposure_weighted": ("float", "weighted train exposure"),
}


def distribution_table(distribution: pd.DataFrame) -> tuple[list[tuple[str, str, str]], list[dict[str, Any]]]:
    """(columns as (name, type, description), rows), most frequent command first; only the columns present."""
    frame = distribution.sort_values("samples", ascending=False)
    present = [name for name in _COLUMNS if name in frame.columns]
    columns = [(name, *_COLUMNS[name]) for name in present]
    # Exposure to one decimal: what a reader compares, and the same whether it was just computed or read back
    # from a reused stage's saved summary (JSON keeps 10 decimals).
    rows = [{name: round(value, 1) if isinstance(value, float) else value for name, value in row.items()}
            for row in frame[present].to_dict("records")]
    return columns, rows


def distribution_chart(distribution: pd.DataFrame, path: str | Path) -> Path:
    """Grouped bars per command: train rows before weighting vs weighted train exposure."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    frame = distribution.sort_values("train_rows", ascending=False)
    positions = range(len(frame))
    width = 0.4
    figure, axis = plt.subplots(figsize=(8, 4), dpi=100)
    try:
        axis.bar([p - width / 2 for p in positions], frame["train_rows"], width, label="before weighting (rows)")
        axis.bar([p + width / 2 for p in positions], frame["exposure_weighted"], width, label="after weighting")
        axis.set_xticks(list(positions), frame["command"], rotation=45, ha="right")
        axis.set_ylabel("train exposure")
        axis.set_title("Command exposure in the training split")
        axis.legend()
        figure.tight_layout()
        figure.savefig(path, format="png")
    finally:
        plt.close(figure)
    return path


def image_markdown(path: str | Path, alt: str = "chart") -> str:
    """Markdown embedding the PNG inline, so the Dagster UI shows it without serving files."""
    encoded = base64.b64encode(Path(path).read_bytes()).decode("ascii")
    return f"![{alt}](data:image/png;base64,{encoded})"
