"""The robot catalog (command_catalog.yaml) as typed models, typed per-command models and a JSON Schema."""

from __future__ import annotations

import functools
import re
from importlib import resources
from typing import Annotated, Any, ClassVar, Literal

import yaml
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StringConstraints, model_validator

from data_contracts.commands import Command

CATALOG_FILE = "command_catalog.yaml"

# Plain regex (no lookarounds) so the same pattern works in the validator, pydantic and xgrammar.
WELL_PATTERN = r"^[A-H](?:[1-9]|1[0-2])$"
WELL_RE = re.compile(WELL_PATTERN)

CHANNEL_MIN, CHANNEL_MAX = 1, 8
SECONDS_MIN = 0
TEMPERATURE_MIN, TEMPERATURE_MAX = 4, 100
RPM_MIN, RPM_MAX = 100, 3000
TIMES_MIN, TIMES_MAX = 1, 50


class ParamSpec(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    type: str
    required: bool


class CommandSpec(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    doc: str = ""
    params: dict[str, ParamSpec]  # in catalog order

    @property
    def required_params(self) -> tuple[str, ...]:
        return tuple(name for name, spec in self.params.items() if spec.required)


class Catalog(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    version: int
    tip_types: dict[str, int]
    plate_rows: list[str]
    plate_columns: int
    types: dict[str, str]
    commands: dict[str, CommandSpec]  # in catalog order
    rules: list[str]
    forms: dict[str, str]

    @property
    def well_names(self) -> frozenset[str]:
        return frozenset(f"{row}{col}" for row in self.plate_rows for col in range(1, self.plate_columns + 1))


def _catalog_from_yaml(raw: dict[str, Any]) -> Catalog:
    plate = raw.get("plate") or {}
    return Catalog(
        version=raw["version"],
        tip_types=raw["tip_types"],
        plate_rows=[str(r) for r in plate["rows"]],
        plate_columns=plate["columns"],
        types=raw.get("types", {}),
        commands=raw["commands"],
        rules=raw.get("rules", []),
        forms=raw.get("forms", {}),
    )


def catalog_text() -> str:
    """The packaged catalog file, verbatim."""
    return resources.files("data_contracts").joinpath(CATALOG_FILE).read_text(encoding="utf-8")


@functools.cache
def load_catalog() -> Catalog:
    """The packaged robot catalog, parsed once per process."""
    return _catalog_from_yaml(yaml.safe_load(catalog_text()))


# --- typed per-command models -------------------------------------------------------------
# Hand-written mirrors of the catalog for code that wants attribute access and static types.
# validate_commands() does not use them (it is the fast path); a test checks they agree with the catalog.


def _no_duplicates(values: list[int]) -> list[int]:
    if len(set(values)) != len(values):
        raise ValueError("channels must not repeat")
    return values


Channel = Annotated[int, Field(ge=CHANNEL_MIN, le=CHANNEL_MAX)]
Channels = Annotated[list[Channel], Field(min_length=1, max_length=CHANNEL_MAX), AfterValidator(_no_duplicates)]
Well = Annotated[str, StringConstraints(pattern=WELL_PATTERN)]
Wells = Annotated[list[Well], Field(min_length=1)]
Volume = Annotated[int | float, Field(gt=0, allow_inf_nan=False)]
Volumes = Annotated[list[Volume], Field(min_length=1)]
Label = Annotated[str, StringConstraints(min_length=1, pattern=r"\S")]
TipType = Literal[tuple(load_catalog().tip_types)]  # type: ignore[valid-type]
Seconds = Annotated[int, Field(ge=SECONDS_MIN)]
Temperature = Annotated[int | float, Field(ge=TEMPERATURE_MIN, le=TEMPERATURE_MAX, allow_inf_nan=False)]
Rpm = Annotated[int, Field(ge=RPM_MIN, le=RPM_MAX)]
Times = Annotated[int, Field(ge=TIMES_MIN, le=TIMES_MAX)]


class CommandModel(BaseModel):
    """Base of the typed commands; strict so that True is not a channel and '5' is not a number."""

    model_config = ConfigDict(frozen=True, extra="forbid", strict=True)

    # Lists that must have one element per channel.
    per_channel: ClassVar[tuple[str, ...]] = ()

    @model_validator(mode="after")
    def _lengths_match_channels(self) -> CommandModel:
        channels = getattr(self, "channels", None)
        for name in self.per_channel:
            if channels is not None and len(getattr(self, name)) != len(channels):
                raise ValueError(f"len({name}) must equal len(channels)")
        return self

    def to_command(self) -> Command:
        return Command(func_name=type(self).__name__, func_parameters=self.model_dump(exclude_none=True))


class GetDiti(CommandModel):
    ditiType: TipType
    channels: Channels


class DropDiti(CommandModel):
    channels: Channels


class Aspirate(CommandModel):
    per_channel = ("wells", "vols")
    channels: Channels
    labware: Label
    wells: Wells
    vols: Volumes
    liquidClass: Label | None = None


class Dispense(Aspirate):
    pass


class Mix(CommandModel):
    per_channel = ("wells", "vols")
    channels: Channels
    labware: Label
    wells: Wells
    vols: Volumes
    times: Times


class Transfer(CommandModel):
    per_channel = ("srcWells", "dstWells", "vols")
    channels: Channels
    srcLabware: Label
    srcWells: Wells
    dstLabware: Label
    dstWells: Wells
    vols: Volumes


class PCR(CommandModel):
    labware: Label
    program: Label


class Delay(CommandModel):
    seconds: Seconds


class Incubate(CommandModel):
    labware: Label
    temperature: Temperature
    seconds: Seconds


class Shake(CommandModel):
    labware: Label
    rpm: Rpm
    seconds: Seconds


class MoveLabware(CommandModel):
    labware: Label
    position: Label


COMMAND_MODELS: dict[str, type[CommandModel]] = {
    model.__name__: model
    for model in (GetDiti, DropDiti, Aspirate, Dispense, Mix, Transfer, PCR, Delay, Incubate, Shake, MoveLabware)
}


def typed_command(command: Command) -> CommandModel:
    """The typed model of a command; raises KeyError for an unknown name, pydantic.ValidationError on bad values."""
    return COMMAND_MODELS[command.func_name].model_validate(command.func_parameters)


# --- JSON Schema --------------------------------------------------------------------------
# Plain JSON-Schema features only (type, enum, const, pattern, minimum/maximum, minItems/maxItems,
# required, properties, additionalProperties, anyOf) so grammar compilers such as xgrammar accept it.
# What a schema cannot say (duplicate channels, equal list lengths, tip capacity) stays in validate_commands.


def _param_type_schemas(catalog: Catalog) -> dict[str, dict[str, Any]]:
    label = {"type": "string", "minLength": 1}
    return {
        "tip_type": {"type": "string", "enum": list(catalog.tip_types)},
        "channels": {
            "type": "array",
            "items": {"type": "integer", "minimum": CHANNEL_MIN, "maximum": CHANNEL_MAX},
            "minItems": 1,
            "maxItems": CHANNEL_MAX,
        },
        "wells": {"type": "array", "items": {"type": "string", "pattern": WELL_PATTERN}, "minItems": 1},
        "vols": {"type": "array", "items": {"type": "number", "exclusiveMinimum": 0}, "minItems": 1},
        "labware": label,
        "program": label,
        "position": label,
        "str": label,
        "seconds": {"type": "integer", "minimum": SECONDS_MIN},
        "temperature": {"type": "number", "minimum": TEMPERATURE_MIN, "maximum": TEMPERATURE_MAX},
        "rpm": {"type": "integer", "minimum": RPM_MIN, "maximum": RPM_MAX},
        "times": {"type": "integer", "minimum": TIMES_MIN, "maximum": TIMES_MAX},
    }


def command_json_schema(name: str, catalog: Catalog | None = None) -> dict[str, Any]:
    """JSON Schema of one command object {"func_name": name, "func_parameters": {...}}."""
    catalog = catalog or load_catalog()
    type_schemas = _param_type_schemas(catalog)
    spec = catalog.commands[name]
    return {
        "type": "object",
        "properties": {
            "func_name": {"const": name},
            "func_parameters": {
                "type": "object",
                "properties": {p: dict(type_schemas[s.type]) for p, s in spec.params.items()},
                "required": list(spec.required_params),
                "additionalProperties": False,
            },
        },
        "required": ["func_name", "func_parameters"],
        "additionalProperties": False,
    }


def catalog_json_schema(catalog: Catalog | None = None) -> dict[str, Any]:
    """JSON Schema of a plan {"commands": [...]} where each item is one catalog command."""
    catalog = catalog or load_catalog()
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": f"sop2cmd command plan (catalog v{catalog.version})",
        "type": "object",
        "properties": {
            "commands": {
                "type": "array",
                "items": {"anyOf": [command_json_schema(name, catalog) for name in catalog.commands]},
                "minItems": 1,
            }
        },
        "required": ["commands"],
        "additionalProperties": False,
    }
