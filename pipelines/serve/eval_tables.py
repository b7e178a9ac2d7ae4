"""What an evaluation writes and shows: per-case rows of the regression_results table, and metric tables.

The metric tables are plain rows with their columns as (name, type[, description]) pairs, type one of
string / int / float / bool; the regression_metrics asset turns them into Dagster metadata tables.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from typing import Any

from data_contracts.forms import render_json_commands
from pipelines.serve.eval_cases import CaseResult, EvalCase
from pipelines.serve.eval_metrics import NONE, EvalMetrics

Columns = list[tuple[str, ...]]

METRIC_COLUMNS: Columns = [("metric", "string"), ("value", "float")]
COMMAND_COLUMNS: Columns = [
    ("command", "string", "a command name, or micro: every name together"),
    ("precision", "float"),
    ("recall", "float"),
    ("f1", "float"),
    ("tp", "int"),
    ("fp", "int"),
    ("fn", "int"),
]
FIELD_COLUMNS: Columns = [
    ("field", "string", "a parameter name"),
    ("accuracy", "float"),
    ("correct", "int"),
    ("trials", "int", "position-aligned command pairs of the same name that have the parameter"),
]
# The confusion table's first column; the other columns are the predicted command names.
CONFUSION_GOLD_COLUMN = "gold \\ predicted"


def gold_json(case: EvalCase) -> str:
    return render_json_commands(case.gold)


def results_frame(results: Sequence[CaseResult], constrained: bool) -> Any:
    """Per-case rows of the `regression_results` Delta table, with the dtypes a read of it gives."""
    from pipelines.data.lake import RESULTS_TABLE, SCHEMAS, frame

    rows = [
        {
            "case_id": result.case.case_id,
            "source_index": result.case.source_index,
            "split_source": result.case.split_source,
            "prompt": result.case.description,
            "gold_json": gold_json(result.case),
            "raw_output": result.checked.raw_output,
            # Only through the output gate: a rejected plan is never rendered as commands (raw_output keeps it).
            "predicted_json": result.checked.canonical_json() if result.checked.catalog_valid else None,
            "json_valid": result.checked.json_valid,
            "catalog_valid": result.checked.catalog_valid,
            "exact_match": result.exact_match,
            "error": result.checked.error_message() or None,
            "latency_s": float(result.latency_s),
            "constrained": bool(constrained),
        }
        for result in results
    ]
    return frame({name: [row[name] for row in rows] for name in SCHEMAS[RESULTS_TABLE].names}, RESULTS_TABLE)


def metric_rows(metrics: EvalMetrics) -> list[dict[str, Any]]:
    """The headline numbers (METRIC_COLUMNS)."""
    return [{"metric": name, "value": float(value)} for name, value in metrics.headline().items()]


def command_rows(metrics: EvalMetrics) -> list[dict[str, Any]]:
    """Precision, recall and F1 per command name, then micro (COMMAND_COLUMNS)."""
    return [
        {"command": name, "precision": prf.precision, "recall": prf.recall, "f1": prf.f1,
         "tp": prf.tp, "fp": prf.fp, "fn": prf.fn}
        for name, prf in metrics.commands.items()
    ]


def field_rows(metrics: EvalMetrics) -> list[dict[str, Any]]:
    """Accuracy per parameter name (FIELD_COLUMNS)."""
    return [
        {"field": name, "accuracy": score.accuracy, "correct": score.correct, "trials": score.total}
        for name, score in metrics.fields.items()
    ]


def confusion_table(confusion: Counter[tuple[str, str]]) -> tuple[Columns, list[dict[str, Any]]]:
    """Rows: gold command names; columns: predicted names (position-aligned), `<none>` last in both."""
    gold = sorted({g for g, _ in confusion}, key=lambda n: (n == NONE, n))
    predicted = sorted({p for _, p in confusion}, key=lambda n: (n == NONE, n))
    columns: Columns = [(CONFUSION_GOLD_COLUMN, "string"), *((name, "int") for name in predicted)]
    rows = [{CONFUSION_GOLD_COLUMN: g, **{p: confusion.get((g, p), 0) for p in predicted}} for g in gold]
    return columns, rows
