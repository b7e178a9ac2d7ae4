"""One evaluation case, the slices cases come from, and a case's checked result.

Each generated output goes parse -> validate -> compare through `pipelines.serve.plan_output.check_plan`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from data_contracts.commands import Command
from data_contracts.forms import render_json_commands
from pipelines.serve.plan_output import CheckedPlan, check_plan

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


def case_key(description: str, gold: Sequence[Command]) -> tuple[str, str]:
    """What makes two cases the same case: the prompted text and the gold plan."""
    return description, render_json_commands(gold)
