"""The metrics of an evaluation: pure functions over plain lists, tested on hand-made fixtures.

Definitions (the numbers in the metrics tables mean exactly this):
- json_valid_rate: share of cases whose output parses as a `{"commands": [...]}` plan.
- catalog_valid_rate: share of cases whose plan also passes every catalog rule.
- exact_match: share of cases whose plan is catalog-valid and equals the gold plan command for command
  (order of commands matters, order of parameters does not, 20 == 20.0).
- per-command precision/recall/F1: per case, the multiset of predicted command names is compared with
  the multiset of gold names; tp = size of their intersection, fp = predicted minus tp, fn = gold minus
  tp (a name counts once per occurrence). An unparseable output predicts nothing. Counts are summed over
  cases per command name; `micro` sums over all names. A ratio whose denominator is 0 is reported as 0.0.
- per-field accuracy: commands are aligned by position; a pair whose names agree is "matched". For each
  matched pair, every parameter name present in either command is one trial, correct when both have it
  with equal values. Accuracy per parameter name = correct / trials.
- confusion table: commands aligned by position; (gold name, predicted name) counts, with `<none>` on the
  side that has no command at that position (unparseable output: every gold command meets `<none>`).
- latency: per-case wall time of the generate call that produced it; p50/p95 by linear interpolation
  between order statistics (numpy's default). cases/s = cases / total generation wall time.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from data_contracts.commands import Command
from pipelines.serve.eval_cases import SLICES, CaseResult

NONE = "<none>"


def rate(flags: Sequence[bool]) -> float:
    return sum(bool(flag) for flag in flags) / len(flags) if flags else 0.0


def _ratio(numerator: int, denominator: int) -> float:
    return numerator / denominator if denominator else 0.0


@dataclass(frozen=True)
class PRF:
    tp: int
    fp: int
    fn: int

    @property
    def precision(self) -> float:
        return _ratio(self.tp, self.tp + self.fp)

    @property
    def recall(self) -> float:
        return _ratio(self.tp, self.tp + self.fn)

    @property
    def f1(self) -> float:
        p, r = self.precision, self.recall
        return 2 * p * r / (p + r) if p + r else 0.0


def command_prf(
    gold_names: Sequence[Sequence[str]], predicted_names: Sequence[Sequence[str] | None]
) -> dict[str, PRF]:
    """Per command name (plus "micro"), multiset precision/recall/F1 over cases (see the module docstring)."""
    counts: dict[str, list[int]] = {}
    for gold, predicted in zip(gold_names, predicted_names, strict=True):
        gold_bag, predicted_bag = Counter(gold), Counter(predicted or ())
        for name in gold_bag.keys() | predicted_bag.keys():
            tp = min(gold_bag[name], predicted_bag[name])
            entry = counts.setdefault(name, [0, 0, 0])
            entry[0] += tp
            entry[1] += predicted_bag[name] - tp
            entry[2] += gold_bag[name] - tp
    result = {name: PRF(*values) for name, values in sorted(counts.items())}
    result["micro"] = PRF(*(sum(values[i] for values in counts.values()) for i in range(3)))
    return result


def _values_equal(a: Any, b: Any) -> bool:
    # Same notion as Command equality: 20 == 20.0, lists element by element, bools are not numbers.
    if isinstance(a, bool) or isinstance(b, bool):
        return type(a) is type(b) and a == b
    if isinstance(a, list | tuple) and isinstance(b, list | tuple):
        return len(a) == len(b) and all(_values_equal(x, y) for x, y in zip(a, b))
    return a == b


@dataclass(frozen=True)
class FieldScore:
    correct: int
    total: int

    @property
    def accuracy(self) -> float:
        return _ratio(self.correct, self.total)


def field_accuracy(
    gold_plans: Sequence[Sequence[Command]], predicted_plans: Sequence[Sequence[Command] | None]
) -> dict[str, FieldScore]:
    """Per parameter name, accuracy over position-aligned commands with the same name."""
    counts: dict[str, list[int]] = {}
    for gold, predicted in zip(gold_plans, predicted_plans, strict=True):
        for gold_command, predicted_command in zip(gold, predicted or ()):
            if gold_command.func_name != predicted_command.func_name:
                continue
            g, p = gold_command.func_parameters, predicted_command.func_parameters
            for name in g.keys() | p.keys():
                entry = counts.setdefault(name, [0, 0])
                entry[1] += 1
                if name in g and name in p and _values_equal(g[name], p[name]):
                    entry[0] += 1
    return {name: FieldScore(*values) for name, values in sorted(counts.items())}


def confusion_counts(
    gold_names: Sequence[Sequence[str]], predicted_names: Sequence[Sequence[str] | None]
) -> Counter[tuple[str, str]]:
    """(gold name, predicted name) pairs of position-aligned commands; `<none>` pads the shorter side."""
    counts: Counter[tuple[str, str]] = Counter()
    for gold, predicted in zip(gold_names, predicted_names, strict=True):
        predicted = list(predicted or ())
        for i in range(max(len(gold), len(predicted))):
            counts[(gold[i] if i < len(gold) else NONE, predicted[i] if i < len(predicted) else NONE)] += 1
    return counts


@dataclass(frozen=True)
class LatencySummary:
    p50_s: float
    p95_s: float
    mean_s: float
    cases_per_s: float


def latency_summary(latencies: Sequence[float], wall_s: float) -> LatencySummary:
    """Percentiles by numpy's default (linear) method; every figure is 0.0 when nothing ran."""
    if not latencies:
        return LatencySummary(p50_s=0.0, p95_s=0.0, mean_s=0.0, cases_per_s=0.0)
    p50, p95 = np.percentile(np.asarray(latencies, dtype=float), [50, 95])
    return LatencySummary(
        p50_s=float(p50),
        p95_s=float(p95),
        mean_s=sum(latencies) / len(latencies),
        cases_per_s=len(latencies) / wall_s if wall_s > 0 else 0.0,
    )


# --- all metrics of one evaluation -----------------------------------------------------------


@dataclass(frozen=True)
class EvalMetrics:
    n_cases: int
    json_valid_rate: float
    catalog_valid_rate: float
    exact_match: float
    commands: dict[str, PRF]
    fields: dict[str, FieldScore]
    confusion: Counter[tuple[str, str]]
    latency: LatencySummary
    mean_new_tokens: float

    def headline(self) -> dict[str, float]:
        micro = self.commands["micro"]
        return {
            "n_cases": self.n_cases,
            "json_valid_rate": self.json_valid_rate,
            "catalog_valid_rate": self.catalog_valid_rate,
            "exact_match": self.exact_match,
            "command_precision": micro.precision,
            "command_recall": micro.recall,
            "command_f1": micro.f1,
            "latency_p50_s": self.latency.p50_s,
            "latency_p95_s": self.latency.p95_s,
            "cases_per_s": self.latency.cases_per_s,
            "mean_new_tokens": self.mean_new_tokens,
        }


def compute_metrics(results: Sequence[CaseResult], wall_s: float) -> EvalMetrics:
    gold_plans = [result.case.gold for result in results]
    predicted_plans = [result.predicted for result in results]
    gold_names = [[c.func_name for c in plan] for plan in gold_plans]
    predicted_names = [None if plan is None else [c.func_name for c in plan] for plan in predicted_plans]
    return EvalMetrics(
        n_cases=len(results),
        json_valid_rate=rate([r.checked.json_valid for r in results]),
        catalog_valid_rate=rate([r.checked.catalog_valid for r in results]),
        exact_match=rate([r.exact_match for r in results]),
        commands=command_prf(gold_names, predicted_names),
        fields=field_accuracy(gold_plans, predicted_plans),
        confusion=confusion_counts(gold_names, predicted_names),
        latency=latency_summary([r.latency_s for r in results], wall_s),
        mean_new_tokens=sum(r.new_tokens for r in results) / len(results) if results else 0.0,
    )


@dataclass(frozen=True)
class SliceRates:
    cases: int
    json_valid_rate: float
    catalog_valid_rate: float
    exact_match: float


def rates_by_slice(results: Sequence[CaseResult]) -> dict[str, SliceRates]:
    """The headline rates of each slice present in `results`, in SLICES order (unknown sources last)."""
    by_slice: dict[str, list[CaseResult]] = {}
    for result in results:
        by_slice.setdefault(result.case.split_source, []).append(result)
    order = [name for name in SLICES if name in by_slice] + [name for name in by_slice if name not in SLICES]
    return {
        name: SliceRates(
            cases=len(by_slice[name]),
            json_valid_rate=rate([r.checked.json_valid for r in by_slice[name]]),
            catalog_valid_rate=rate([r.checked.catalog_valid for r in by_slice[name]]),
            exact_match=rate([r.exact_match for r in by_slice[name]]),
        )
        for name in order
    }
