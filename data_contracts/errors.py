"""Errors raised on bad data. Every one derives from ContractError so callers can catch the family."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from data_contracts.validation import ValidationIssue


class ContractError(Exception):
    """Base of every error raised because data does not meet a contract."""


class CommandParseError(ContractError):
    """A command text or JSON document could not be read; `line` is 1-based when known."""

    def __init__(self, message: str, line: int | None = None) -> None:
        self.message = message
        self.line = line
        super().__init__(f"line {line}: {message}" if line is not None else message)

    def __reduce__(self) -> tuple[type, tuple[str, int | None]]:
        # Keep `line` when the error crosses a process boundary (executors pickle exceptions).
        return (type(self), (self.message, self.line))


class CatalogViolation(ContractError):
    """Commands that parse but break one or more catalog rules."""

    def __init__(self, issues: list[ValidationIssue]) -> None:
        self.issues = list(issues)
        super().__init__(self._describe())

    def _describe(self) -> str:
        count = len(self.issues)
        header = f"{count} catalog violation{'s' if count != 1 else ''}"
        return "\n".join([header + ":", *(f"- [{i.rule}] {i.message}" for i in self.issues)])

    def __str__(self) -> str:
        return self._describe()

    def __reduce__(self) -> tuple[type, tuple[list[ValidationIssue]]]:
        return (type(self), (self.issues,))
