from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from data_contracts.catalog import (
    COMMAND_MODELS,
    WELL_RE,
    Catalog,
    GetDiti,
    Transfer,
    catalog_text,
    load_catalog,
    typed_command,
)
from data_contracts.commands import Command

SHARED_CATALOG = Path(__file__).resolve().parents[3] / "shared" / "command_catalog.yaml"


@pytest.mark.skipif(not SHARED_CATALOG.exists(), reason="../shared is not beside this checkout")
def test_packaged_catalog_is_an_exact_copy_of_the_shared_one() -> None:
    assert catalog_text() == SHARED_CATALOG.read_text(encoding="utf-8")


def test_catalog_loads_into_typed_models() -> None:
    catalog = load_catalog()
    assert isinstance(catalog, Catalog)
    assert catalog.version == 1
    assert catalog.tip_types == {"10ul": 10, "50ul": 50, "200ul": 200, "1000ul": 1000}
    assert catalog.plate_rows == list("ABCDEFGH")
    assert catalog.plate_columns == 12
    assert list(catalog.commands) == [
        "GetDiti", "DropDiti", "Aspirate", "Dispense", "Mix", "Transfer",
        "PCR", "Delay", "Incubate", "Shake", "MoveLabware",
    ]  # fmt: skip
    aspirate = catalog.commands["Aspirate"]
    assert list(aspirate.params) == ["channels", "labware", "wells", "vols", "liquidClass"]
    assert aspirate.params["liquidClass"].required is False
    assert aspirate.params["wells"].type == "wells"
    assert aspirate.required_params == ("channels", "labware", "wells", "vols")
    assert len(catalog.well_names) == 96


def test_load_catalog_is_cached() -> None:
    assert load_catalog() is load_catalog()


def test_well_names_match_the_well_pattern() -> None:
    names = load_catalog().well_names
    assert all(WELL_RE.match(name) for name in names)
    for bad in ("A0", "A01", "A13", "I1", "a1", "A1 ", "AA1", ""):
        assert not WELL_RE.match(bad), bad


def test_typed_models_mirror_the_catalog() -> None:
    catalog = load_catalog()
    assert set(COMMAND_MODELS) == set(catalog.commands)
    for name, spec in catalog.commands.items():
        fields = COMMAND_MODELS[name].model_fields
        assert list(fields) == list(spec.params), name
        for param, param_spec in spec.params.items():
            assert fields[param].is_required() == param_spec.required, (name, param)


def test_typed_model_round_trips_to_a_command() -> None:
    command = Command(func_name="GetDiti", func_parameters={"ditiType": "50ul", "channels": [1, 2]})
    typed = typed_command(command)
    assert isinstance(typed, GetDiti)
    assert typed.channels == [1, 2]
    assert typed.to_command() == command


@pytest.mark.parametrize(
    "params",
    [
        {"ditiType": "20ul", "channels": [1]},
        {"ditiType": "50ul", "channels": [0]},
        {"ditiType": "50ul", "channels": [1, 1]},
        {"ditiType": "50ul", "channels": [True]},
        {"ditiType": "50ul", "channels": []},
        {"ditiType": "50ul", "channels": [1], "extra": 1},
    ],
)
def test_typed_model_rejects_what_the_catalog_forbids(params: dict) -> None:
    from pydantic import ValidationError

    with pytest.raises(ValidationError):
        GetDiti.model_validate(params)


def test_typed_transfer_requires_one_entry_per_channel() -> None:
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match="len\\(dstWells\\)"):
        Transfer(
            channels=[1, 2], srcLabware="S", srcWells=["A1", "B1"], dstLabware="D", dstWells=["A1"], vols=[5, 5]
        )


def test_catalog_yaml_declares_only_types_the_contracts_implement() -> None:
    raw = yaml.safe_load(catalog_text())
    used = {p["type"] for c in raw["commands"].values() for p in c["params"].values()}
    assert used <= set(raw["types"]) | {"tip_type", "str"}
