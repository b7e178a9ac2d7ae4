"""Pictures of the command distribution for asset metadata: a markdown table and a PNG bar chart."""

from __future__ import annotations

import base64
from pathlib import Path

import pandas as pd

_COLUMNS = {
    "command": "command",
    "samples": "samples",
    "train_sources": "train sources",
    "eval_sources": "eval sources",
    "train_rows": "train rows (unweighted exposure)",
    "exposure_weighted": "weighted train exposure",
}


def distribution_markdown(distribution: pd.DataFrame) -> str:
    frame = distribution.sort_values("samples", ascending=False)
    present = [c for c in _COLUMNS if c in frame.columns]
    lines = [
        "| " + " | ".join(_COLUMNS[c] for c in present) + " |",
        "| " + " | ".join("---" if c == "command" else "---:" for c in present) + " |",
    ]
    for row in frame[present].itertuples(index=False):
        cells = [f"{value:,.1f}" if isinstance(value, float) else f"{value}" for value in row]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


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
