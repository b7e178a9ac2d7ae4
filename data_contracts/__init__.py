"""What data must be: the robot catalog, command models, parser/renderers, validator, table contracts.

Imports nothing of ours and never Dagster; `pipelines` and `assets` build on it.
"""

from data_contracts.catalog import (
    COMMAND_MODELS,
    Catalog,
    CommandModel,
    CommandSpec,
    ParamSpec,
    catalog_json_schema,
    command_json_schema,
    load_catalog,
    typed_command,
)
from data_contracts.commands import Command, CommandPlan
from data_contracts.errors import CatalogViolation, CommandParseError, ContractError
from data_contracts.forms import (
    parse_json_commands,
    parse_text_commands,
    render_json_commands,
    render_text_commands,
)
from data_contracts.validation import ValidationIssue, ensure_valid, validate_commands

__all__ = [
    "COMMAND_MODELS",
    "Catalog",
    "CatalogViolation",
    "Command",
    "CommandModel",
    "CommandParseError",
    "CommandPlan",
    "CommandSpec",
    "ContractError",
    "ParamSpec",
    "ValidationIssue",
    "catalog_json_schema",
    "command_json_schema",
    "ensure_valid",
    "load_catalog",
    "parse_json_commands",
    "parse_text_commands",
    "render_json_commands",
    "render_text_commands",
    "typed_command",
    "validate_commands",
]
