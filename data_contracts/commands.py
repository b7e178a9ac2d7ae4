"""The command value type shared by every layer: one robot call and a plan of calls."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict


def _freeze(value: Any) -> Any:
    """Hashable stand-in for a parameter value; equal values (20 and 20.0) freeze to equal keys."""
    if isinstance(value, list | tuple):
        return tuple(_freeze(v) for v in value)
    if isinstance(value, dict):
        return frozenset((k, _freeze(v)) for k, v in value.items())
    return value


class Command(BaseModel):
    """One robot call. Parameter order is not significant: equality compares parameters as a mapping."""

    model_config = ConfigDict(frozen=True)

    func_name: str
    func_parameters: dict[str, Any]

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Command):
            return NotImplemented
        return self.func_name == other.func_name and self.func_parameters == other.func_parameters

    def __hash__(self) -> int:
        return hash((self.func_name, _freeze(self.func_parameters)))

    def to_dict(self) -> dict[str, Any]:
        """The JSON-form object of this command (parameters in their current order)."""
        return {"func_name": self.func_name, "func_parameters": dict(self.func_parameters)}


class CommandPlan(BaseModel):
    """The model's target: an ordered list of commands."""

    model_config = ConfigDict(frozen=True)

    commands: list[Command]
