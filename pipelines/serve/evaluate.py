"""Evaluation of generated plans: per-case checks and the metric functions over them.

Each case goes parse -> validate -> compare through `pipelines.serve.plan_output.check_plan`. The metric
functions are pure and take plain lists, so they are tested on hand-made fixtures.

Definitions (the numbers in the metrics table mean exactly this):
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

import math
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from data_contracts.commands import Command
from data_contracts.errors import ContractError
from data_contracts.forms import render_json_commands
from pipelines.serve.plan_output import CheckedPlan, check_plan
from pipelines.progress import clock_text

NONE = "<none>"


# --- per case ------------------------------------------------------------------------------


@dataclass(frozen=True)
class EvalCase:
    case_id: str
    description: str  # normalized: the text the model is prompted with
    gold: tuple[Command, ...]
    split_source: str  # one of SLICES
    source_index: str | None = None
    # The text as written, before normalization rewrote ranges and units (the phenomena tags read it).
    raw_description: str | None = None
    # The phrasing family of a held-out case: a capped sample takes cases from every family in turn.
    phrasing: str | None = None


@dataclass(frozen=True)
class CaseResult:
    case: EvalCase
    checked: CheckedPlan
    latency_s: float
    new_tokens: int
    stopped: bool

    @property
    def predicted(self) -> tuple[Command, ...] | None:
        return self.checked.commands

    @property
    def exact_match(self) -> bool:
        return self.checked.catalog_valid and plans_equal(self.case.gold, self.checked.commands or ())


def plans_equal(gold: Sequence[Command], predicted: Sequence[Command]) -> bool:
    return list(gold) == list(predicted)


def evaluate_case(case: EvalCase, raw_output: str, latency_s: float, new_tokens: int, stopped: bool) -> CaseResult:
    # With the description, the gate also rejects labels the text never mentions (ungrounded strings).
    checked = check_plan(raw_output, description=case.description)
    return CaseResult(case=case, checked=checked, latency_s=latency_s, new_tokens=new_tokens, stopped=stopped)


# --- metric functions ------------------------------------------------------------------------


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


def command_prf(gold_names: Sequence[Sequence[str]], predicted_names: Sequence[Sequence[str] | None]) -> dict[str, PRF]:
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


def percentile(values: Sequence[float], q: float) -> float:
    """Linear interpolation between order statistics (numpy.percentile's default method)."""
    if not values:
        return 0.0
    ordered = sorted(values)
    position = (len(ordered) - 1) * q / 100.0
    low, high = math.floor(position), math.ceil(position)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


@dataclass(frozen=True)
class LatencySummary:
    p50_s: float
    p95_s: float
    mean_s: float
    cases_per_s: float


def latency_summary(latencies: Sequence[float], wall_s: float) -> LatencySummary:
    return LatencySummary(
        p50_s=percentile(latencies, 50),
        p95_s=percentile(latencies, 95),
        mean_s=sum(latencies) / len(latencies) if latencies else 0.0,
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


def metrics_markdown(metrics: EvalMetrics) -> str:
    lines = ["| metric | value |", "| --- | --- |"]
    for name, value in metrics.headline().items():
        lines.append(f"| {name} | {value:.4g} |" if isinstance(value, float) else f"| {name} | {value} |")
    lines += ["", "| command | precision | recall | f1 | tp | fp | fn |", "| --- | --- | --- | --- | --- | --- | --- |"]
    for name, prf in metrics.commands.items():
        lines.append(f"| {name} | {prf.precision:.3f} | {prf.recall:.3f} | {prf.f1:.3f} | {prf.tp} | {prf.fp} | {prf.fn} |")
    lines += ["", "| field | accuracy | correct | trials |", "| --- | --- | --- | --- |"]
    for name, score in metrics.fields.items():
        lines.append(f"| {name} | {score.accuracy:.3f} | {score.correct} | {score.total} |")
    return "\n".join(lines)


def confusion_markdown(confusion: Counter[tuple[str, str]]) -> str:
    """Rows: gold command names; columns: predicted names (position-aligned)."""
    gold = sorted({g for g, _ in confusion}, key=lambda n: (n == NONE, n))
    predicted = sorted({p for _, p in confusion}, key=lambda n: (n == NONE, n))
    lines = ["| gold \\ predicted | " + " | ".join(predicted) + " |", "| --- " * (len(predicted) + 1) + "|"]
    for g in gold:
        lines.append(f"| {g} | " + " | ".join(str(confusion.get((g, p), 0)) for p in predicted) + " |")
    return "\n".join(lines)


def gold_json(case: EvalCase) -> str:
    return render_json_commands(case.gold)


# --- running an evaluation -------------------------------------------------------------------


def run_evaluation(
    model: Any,
    tokenizer: Any,
    cases: Sequence[EvalCase],
    config: Any,
    on_batch: Callable[[int, int], None] | None = None,
) -> tuple[list[CaseResult], float]:
    """Generate (batched, greedy) for every case, check each output; returns results and generation wall time.

    `on_batch(done, total)` is called after each decoding batch (see `progress_reporter`).
    """
    from pipelines.serve.decode import generate_batched

    started = time.perf_counter()
    generations = generate_batched(model, tokenizer, [case.description for case in cases], config, on_batch=on_batch)
    wall_s = time.perf_counter() - started
    results = [
        evaluate_case(case, g.text, g.latency_s, g.new_tokens, g.stopped) for case, g in zip(cases, generations, strict=True)
    ]
    return results, wall_s


def results_frame(results: Sequence[CaseResult], constrained: bool) -> Any:
    """Per-case rows in the columns of RegressionResultTable (the `regression_results` Delta table)."""
    import pandas as pd

    rows = []
    for result in results:
        checked = result.checked
        rows.append(
            {
                "case_id": result.case.case_id,
                "source_index": result.case.source_index,
                "split_source": result.case.split_source,
                "prompt": result.case.description,
                "gold_json": gold_json(result.case),
                "raw_output": checked.raw_output,
                # Only through the output gate: a rejected plan is never rendered as commands (raw_output keeps it).
                "predicted_json": checked.canonical_json() if checked.catalog_valid else None,
                "json_valid": checked.json_valid,
                "catalog_valid": checked.catalog_valid,
                "exact_match": result.exact_match,
                "error": checked.error_message() or None,
                "latency_s": float(result.latency_s),
                "constrained": bool(constrained),
            }
        )
    columns = [
        "case_id", "source_index", "split_source", "prompt", "gold_json", "raw_output", "predicted_json",
        "json_valid", "catalog_valid", "exact_match", "error", "latency_s", "constrained",
    ]
    frame = pd.DataFrame(rows, columns=columns)
    for name in ("case_id", "source_index", "split_source", "prompt", "gold_json", "raw_output", "predicted_json", "error"):
        frame[name] = frame[name].astype(object)
    return frame.astype({"json_valid": bool, "catalog_valid": bool, "exact_match": bool, "latency_s": float, "constrained": bool})


# How every evaluation progress line starts, so a reader of the run's log can pick them out
# (training's lines start "training progress").
PROGRESS_PREFIX = "evaluation progress"


def progress_reporter(
    detail: str, log: Callable[[str], None], clock: Callable[[], float] = time.perf_counter
) -> Callable[[int, int], None]:
    """An `on_batch` callback that logs cases done out of total and the ETA, from the mean pace so far.

    A full evaluation decodes for many minutes on a CPU; one line per batch in the run's log says how far
    it got and when it will end, instead of a silent step.
    """
    started = clock()

    def report(done: int, total: int) -> None:
        elapsed = clock() - started
        remaining = elapsed / done * (total - done) if done else 0.0
        share = done / total if total else 1.0
        timing = f"elapsed {clock_text(elapsed)}, eta {clock_text(remaining)}"
        log(f"{PROGRESS_PREFIX}: {done}/{total} cases ({share:.0%}), {detail}, {timing}")

    return report


# --- the evaluation slices -------------------------------------------------------------------
#
# eval:       the eval split of augmented_training_set (the only slice the blocking gate judges);
# mismatched: past eval-split failures (the mismatched-cases file), minus those already in the eval split;
# heldout:    whole phrasing families training never sees (generalization to new wording);
# public:     the 20 public examples (never training data; a project copy under data/eval).

EVAL_SOURCE = "eval"
MISMATCHED_SOURCE = "mismatched"
HELDOUT_SOURCE = "heldout"
PUBLIC_SOURCE = "public"
SLICES = (EVAL_SOURCE, MISMATCHED_SOURCE, HELDOUT_SOURCE, PUBLIC_SOURCE)
GATED_SLICE = EVAL_SOURCE


def eval_split_cases(augmented: Any, normalized: Any) -> list[EvalCase]:
    """One case per eval-split `source_index`: its normalized description and gold commands."""
    from data_contracts.forms import parse_json_commands

    eval_ids = set(augmented.loc[augmented["split"] == EVAL_SOURCE, "source_index"].astype(str))
    samples = normalized[normalized["source_index"].astype(str).isin(eval_ids)].sort_values("source_index")
    missing = eval_ids - set(samples["source_index"].astype(str))
    if missing:
        raise ValueError(f"{len(missing)} eval source_index values have no normalized sample, e.g. {sorted(missing)[:3]}")
    return [
        EvalCase(
            case_id=f"{EVAL_SOURCE}:{row.source_index}",
            description=str(row.input_text),
            gold=tuple(parse_json_commands(str(row.commands_json))),
            split_source=EVAL_SOURCE,
            source_index=str(row.source_index),
            raw_description=str(row.raw_input),
        )
        for row in samples.itertuples(index=False)
    ]


def _case_key(description: str, gold: Sequence[Command]) -> tuple[str, str]:
    return description, render_json_commands(gold)


def read_mismatched_cases(path: Any) -> list[EvalCase]:
    """Cases of the mismatched file (raw corpus format with an `id`); a bad line is an error naming it."""
    return read_cases(path, MISMATCHED_SOURCE)


def read_cases(path: Any, source: str) -> list[EvalCase]:
    """Cases of a file in the raw corpus format with an `id` each, ids prefixed `<source>:`; [] if no file.

    An optional `phrasing` key (held-out files) is kept on the case; other extra keys (`tags`) are ignored.
    """
    import json
    from pathlib import Path

    from data_contracts.forms import parse_text_commands
    from pipelines.data.normalize import normalize_text, source_index

    path = Path(path)
    if not path.is_file():
        return []
    cases = []
    for line_number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
            turn = record["conversation"][0]
            raw_description = str(turn["input"])
            description = normalize_text(raw_description)
            gold = tuple(parse_text_commands(str(turn["output"])))
            case_id = str(record["id"])
            phrasing = record.get("phrasing")
        except (ValueError, KeyError, IndexError, TypeError, ContractError) as error:
            raise ValueError(f"{path}:{line_number}: not a regression case ({type(error).__name__}: {error})") from error
        cases.append(
            EvalCase(
                case_id=f"{source}:{case_id}",
                description=description,
                gold=gold,
                split_source=source,
                source_index=source_index(description, render_json_commands(gold)),
                raw_description=raw_description,
                phrasing=_first_family(phrasing),
            )
        )
    return cases


def _first_family(phrasing: Any) -> str | None:
    """The family a capped sample rotates on: the generator lists one per command, the first names the record."""
    if isinstance(phrasing, list):
        return str(phrasing[0]) if phrasing else None
    return None if phrasing is None else str(phrasing)


def regression_set(eval_cases: Sequence[EvalCase], mismatched: Sequence[EvalCase]) -> list[EvalCase]:
    """Eval cases, then mismatched cases not already present (same description and gold commands)."""
    seen: set[tuple[str, str]] = set()
    cases = []
    for case in [*eval_cases, *mismatched]:
        key = _case_key(case.description, case.gold)
        if key not in seen:
            seen.add(key)
            cases.append(case)
    return cases


def cap_cases(cases: Sequence[EvalCase], limit: int | None) -> list[EvalCase]:
    """At most `limit` cases (None: all), in case-id order; the same input always keeps the same cases.

    Cases are taken in case-id order (eval ids are content hashes, so that is a fixed pseudo-random
    sample); cases that carry a phrasing family are taken from each family in turn, so a small cap of
    the held-out slice still covers every family.
    """
    ordered = sorted(cases, key=lambda case: case.case_id)
    if limit is None or len(ordered) <= limit:
        return ordered
    families: dict[str, list[EvalCase]] = {}
    for case in ordered:
        families.setdefault(case.phrasing or "", []).append(case)
    queues = [families[name] for name in sorted(families)]
    picked: list[EvalCase] = []
    for position in range(max(len(queue) for queue in queues)):
        picked += [queue[position] for queue in queues if position < len(queue)]
    return sorted(picked[:limit], key=lambda case: case.case_id)


@dataclass(frozen=True)
class EvalSlice:
    """One slice of an evaluation: the cases to run and how many the slice holds before any cap."""

    name: str
    cases: tuple[EvalCase, ...]
    available: int
    path: str | None = None  # the file the slice was read from; None for the eval split
    missing: bool = False  # that file does not exist: reported as 0 cases, not an error

    @property
    def evaluated(self) -> int:
        return len(self.cases)


def evaluation_slices(
    eval_cases: Sequence[EvalCase],
    mismatched_path: Any,
    heldout_path: Any,
    public_path: Any,
    max_cases: dict[str, int | None] | None = None,
) -> list[EvalSlice]:
    """The four slices in SLICES order, each capped by `max_cases[<slice>]` (a slice not named: whole)."""
    from pathlib import Path

    caps = max_cases or {}
    mismatched = [
        case for case in regression_set(eval_cases, read_cases(mismatched_path, MISMATCHED_SOURCE))
        if case.split_source == MISMATCHED_SOURCE
    ]
    available: list[tuple[str, list[EvalCase], Path | None]] = [
        (EVAL_SOURCE, list(eval_cases), None),
        (MISMATCHED_SOURCE, mismatched, Path(mismatched_path)),
        (HELDOUT_SOURCE, read_cases(heldout_path, HELDOUT_SOURCE), Path(heldout_path)),
        (PUBLIC_SOURCE, read_cases(public_path, PUBLIC_SOURCE), Path(public_path)),
    ]
    return [
        EvalSlice(
            name=name,
            cases=tuple(cap_cases(cases, caps.get(name))),
            available=len(cases),
            path=None if path is None else str(path),
            missing=path is not None and not path.is_file(),
        )
        for name, cases, path in available
    ]


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


def mismatched_record(case: EvalCase) -> str:
    import json

    from data_contracts.forms import render_text_commands

    # The text as written: normalization is idempotent, so reading it back gives the same case, and the
    # ranges and units the phenomena tags look for are still there.
    record = {
        "conversation": [{"input": case.raw_description or case.description, "output": render_text_commands(case.gold)}],
        "id": case.source_index or case.case_id,
    }
    return json.dumps(record, ensure_ascii=False)


def append_failures(path: Any, results: Sequence[CaseResult]) -> int:
    """Append every failed eval-split case not yet in the file; returns how many were added.

    Only the eval slice feeds the file: it becomes regression cases, and the held-out and public cases must
    never land in a data file that could be mistaken for training data.

    Existing lines stay byte for byte; new lines follow in case-id order, so the same results always
    give the same file. The file is replaced atomically (write a temporary file, then rename), so a
    crash leaves the old file or the new one, never a torn line.
    """
    import os
    import tempfile
    from pathlib import Path

    path = Path(path)
    known = {_case_key(case.description, case.gold) for case in read_mismatched_cases(path)}
    new_cases = []
    for result in sorted(results, key=lambda r: r.case.case_id):
        if result.case.split_source != EVAL_SOURCE:
            continue
        key = _case_key(result.case.description, result.case.gold)
        if not result.exact_match and key not in known:
            known.add(key)
            new_cases.append(result.case)
    if not new_cases:
        return 0
    existing = path.read_text(encoding="utf-8") if path.is_file() else ""
    if existing and not existing.endswith("\n"):
        existing += "\n"
    text = existing + "".join(mismatched_record(case) + "\n" for case in new_cases)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as temp:
            temp.write(text)
            temp.flush()
            os.fsync(temp.fileno())
        os.replace(temp_name, path)
    except BaseException:
        Path(temp_name).unlink(missing_ok=True)
        raise
    return len(new_cases)


# --- settings from params.yaml (`eval:` and `gate:`) -----------------------------------------


@dataclass(frozen=True)
class EvalSettings:
    mismatched_cases: str = "data/regression/mismatched_cases.jsonl"
    heldout_cases: str = "data/heldout/phrasing_families.jsonl"
    public_cases: str = "data/eval/sop_examples.jsonl"
    batch_size: int = 16
    max_new_tokens: int = 384
    constrained: bool = True
    compare_unconstrained: bool = False
    # Per slice ({"eval": 250, "heldout": 12, ...}); a slice not named, or null, is evaluated whole.
    max_cases: dict[str, int | None] | None = None
    # Add this run's failures to the mismatched-cases file (off for throwaway models such as smoke).
    append_failures: bool = True
    limits: dict[str, int] | None = None

    def __post_init__(self) -> None:
        if self.max_cases is None:
            return
        if not isinstance(self.max_cases, dict):
            raise ValueError(f"eval.max_cases must map slice names {list(SLICES)} to a case count, got {self.max_cases!r}")
        unknown = sorted(set(self.max_cases) - set(SLICES))
        if unknown:
            raise ValueError(f"eval.max_cases: unknown slices {unknown}; the slices are {list(SLICES)}")
        for name, limit in self.max_cases.items():
            if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 0):
                raise ValueError(f"eval.max_cases.{name} must be a count >= 0 or null, got {limit!r}")

    def decoding_config(self, constrained: bool | None = None) -> Any:
        from pipelines.serve.constrained import DecodingLimits
        from pipelines.serve.decode import DecodingConfig

        return DecodingConfig(
            max_new_tokens=self.max_new_tokens,
            batch_size=self.batch_size,
            constrained=self.constrained if constrained is None else constrained,
            limits=DecodingLimits(**(self.limits or {})),
        )


@dataclass(frozen=True)
class GateThresholds:
    min_json_valid_rate: float = 1.0
    min_catalog_valid_rate: float = 1.0
    min_exact_match: float = 0.0

    def minimums(self) -> dict[str, float]:
        return {
            "json_valid_rate": self.min_json_valid_rate,
            "catalog_valid_rate": self.min_catalog_valid_rate,
            "exact_match": self.min_exact_match,
        }

    def failures(self, observed: dict[str, float]) -> list[str]:
        """Why the gate fails for these rates (keys as in `minimums`); empty when it passes."""
        return [f"{name} {observed[name]:.4f} < {low}" for name, low in self.minimums().items() if observed[name] < low]


def _known_keys(cls: type, values: dict[str, Any], where: str) -> dict[str, Any]:
    from dataclasses import fields

    known = {f.name for f in fields(cls)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise ValueError(f"params.yaml {where}: unknown keys {unknown}; known keys are {sorted(known)}")
    return values


def eval_settings(sections: dict[str, Any], profile: str) -> EvalSettings:
    """`eval:` base values, overridden by `eval.profiles.<profile>`."""
    section = dict(sections.get("eval") or {})
    overrides = dict((section.pop("profiles", None) or {}).get(profile) or {})
    merged = {**section, **overrides}
    for mapping in ("limits", "max_cases"):
        if isinstance(section.get(mapping), dict) and isinstance(overrides.get(mapping), dict):
            merged[mapping] = {**section[mapping], **overrides[mapping]}
    return EvalSettings(**_known_keys(EvalSettings, merged, f"eval (profile {profile})"))


def gate_thresholds(sections: dict[str, Any], profile: str) -> GateThresholds:
    """`gate.<profile>`; a profile without its own entry uses `gate.default`."""
    section = sections.get("gate") or {}
    values = section.get(profile, section.get("default")) or {}
    return GateThresholds(**_known_keys(GateThresholds, dict(values), f"gate.{profile}"))
