"""The one gate between model output and anything that emits commands: parse, then validate, then render.

Every output path (the `predict` CLI, the regression asset, any serving path) goes through `check_plan`
and prints only what `CheckedPlan.output_record()` / `CheckedPlan.canonical_json()` give back. Those
re-validate the commands right before rendering, so a plan that breaks the catalog can never be
rendered as commands, whatever the caller did in between. A rejected plan keeps the raw model output
for inspection, and its error names the command index, command, field and rule of each problem.

Given the description the plan was made from (the normalized text the model saw), the gate also
rejects labels that do not occur in it (rule `ungrounded_string`), and keeps checking that on render.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from data_contracts.commands import Command
from data_contracts.errors import CommandParseError, ContractError
from data_contracts.forms import parse_json_commands, render_json_commands
from data_contracts.validation import ValidationIssue, validate_commands

# Rule id of an output that is not a command plan at all (bad JSON or wrong shape).
PARSE_RULE = "json_parse"


class PlanRejected(ContractError):
    """Raised when asked for the commands of a plan that failed the gate."""

    def __init__(self, plan: CheckedPlan) -> None:
        self.plan = plan
        super().__init__(plan.error_message())


@dataclass(frozen=True)
class CheckedPlan:
    """A model output after the gate. `commands` is None when the output did not parse."""

    raw_output: str
    commands: tuple[Command, ...] | None
    issues: tuple[ValidationIssue, ...]
    description: str | None = None  # the text labels were checked against; None: not checked

    @property
    def json_valid(self) -> bool:
        return self.commands is not None

    @property
    def catalog_valid(self) -> bool:
        return self.commands is not None and not self.issues

    def error_message(self) -> str:
        if self.catalog_valid:
            return ""
        what = "is not a command plan" if self.commands is None else "breaks the robot catalog"
        lines = [
            f"model output rejected: it {what} ({len(self.issues)} problem{'s' if len(self.issues) != 1 else ''})"
        ]
        lines += [f"- {describe_issue(issue)}" for issue in self.issues]
        return "\n".join(lines)

    def canonical_json(self) -> str:
        """The plan as canonical JSON; raises PlanRejected unless every command passes the catalog now."""
        if self.commands is None or self.issues or validate_commands(self.commands, self.description):
            raise PlanRejected(self)
        return render_json_commands(self.commands)

    def output_record(self) -> dict[str, Any]:
        """`{"commands": [...]}` for a valid plan, else `{"error": {message, issues, raw_output}}`."""
        try:
            return json.loads(self.canonical_json())
        except PlanRejected:
            return {
                "error": {
                    "message": self.error_message(),
                    "issues": [issue.to_dict() for issue in self.issues],
                    "raw_output": self.raw_output,
                }
            }

    def output_line(self) -> str:
        """One JSON Lines record (no newline): canonical JSON of the plan, or the error object."""
        try:
            return self.canonical_json()
        except PlanRejected:
            return json.dumps(self.output_record(), ensure_ascii=False)


def describe_issue(issue: ValidationIssue) -> str:
    # The validator's messages already name the command index, the command and the field.
    return f"rule {issue.rule}: {issue.message}"


def check_commands(commands: Sequence[Command], raw_output: str = "", description: str | None = None) -> CheckedPlan:
    """The gate for commands that are already parsed (e.g. hand-made plans).

    Labels must be grounded in `description` when one is given.
    """
    commands = tuple(commands)
    issues = tuple(validate_commands(commands, description))
    return CheckedPlan(raw_output=raw_output, commands=commands, issues=issues, description=description)


def check_plan(raw_output: str, description: str | None = None) -> CheckedPlan:
    """Parse the model's raw JSON text, then validate it against the full catalog (and `description`, if given)."""
    try:
        commands = parse_json_commands(raw_output.strip())
    except CommandParseError as error:
        issue = ValidationIssue(
            command_index=None, command=None, field=None, rule=PARSE_RULE, message=f"not a command plan: {error}"
        )
        return CheckedPlan(raw_output=raw_output, commands=None, issues=(issue,), description=description)
    return check_commands(commands, raw_output, description)
