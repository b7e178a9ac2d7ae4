"""How long-running steps (training, evaluation) write elapsed time and ETA in their progress lines."""

from __future__ import annotations


def clock_text(seconds: float) -> str:
    """Seconds as H:MM:SS: one format for every progress line in the run's event log."""
    whole = int(round(seconds))
    return f"{whole // 3600}:{whole % 3600 // 60:02d}:{whole % 60:02d}"
