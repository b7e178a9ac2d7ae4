"""No plan that breaks the catalog is ever output as commands: hand-written bad plans for every catalog rule.

Each bad plan is fed to the output gate (`pipelines.serve.plan_output.check_plan`) as raw model text and must be
rejected with the right rule, naming the step (command index and name) and the field, with the raw
output kept. The predict CLI and the regression results are checked end to end with the same plans.
"""

from __future__ import annotations

import io
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from data_contracts.catalog import load_catalog
from data_contracts.forms import parse_text_commands, render_json_commands
from pipelines.serve.plan_output import PlanRejected, check_plan
from tests.helpers import FIXTURES, predict_args

CATALOG = load_catalog()


def _cmd(name: str, **params: Any) -> dict[str, Any]:
    return {"func_name": name, "func_parameters": params}


def _plan(*commands: dict[str, Any]) -> str:
    return json.dumps({"commands": list(commands)}, ensure_ascii=False)


# A valid value for every parameter of every command, used to build plans that break exactly one rule.
VALID_PARAMS: dict[str, dict[str, Any]] = {
    "GetDiti": {"ditiType": "200ul", "channels": [1, 2]},
    "DropDiti": {"channels": [1, 2]},
    "Aspirate": {
        "channels": [1, 2],
        "labware": "Plate1",
        "wells": ["A1", "B1"],
        "vols": [20, 20],
        "liquidClass": "Water",
    },
    "Dispense": {
        "channels": [1, 2],
        "labware": "Plate2",
        "wells": ["A1", "B1"],
        "vols": [20, 20],
        "liquidClass": "Water",
    },
    "Mix": {"channels": [1, 2], "labware": "Plate1", "wells": ["A1", "B1"], "vols": [20, 20], "times": 3},
    "Transfer": {
        "channels": [1, 2],
        "srcLabware": "P1",
        "srcWells": ["A1", "B1"],
        "dstLabware": "P2",
        "dstWells": ["C1", "D1"],
        "vols": [20, 20],
    },
    "PCR": {"labware": "PCR_Plate", "program": "PCR35"},
    "Delay": {"seconds": 60},
    "Incubate": {"labware": "Plate1", "temperature": 37, "seconds": 600},
    "Shake": {"labware": "Plate1", "rpm": 700, "seconds": 60},
    "MoveLabware": {"labware": "Plate1", "position": "Heater"},
}
# A value of the wrong type for each parameter type of the catalog.
WRONG_TYPE: dict[str, Any] = {
    "channels": 1,
    "wells": "A1",
    "vols": 20,
    "tip_type": 50,
    "labware": ["Plate1"],
    "program": 35,
    "position": None,
    "str": 1.5,
    "seconds": "60",
    "temperature": "37C",
    "rpm": 700.5,
    "times": [3],
}


def _with(name: str, **changes: Any) -> dict[str, Any]:
    params = {**VALID_PARAMS[name], **changes}
    return _cmd(name, **{k: v for k, v in params.items() if v is not _DROP})


_DROP = object()


@dataclass(frozen=True)
class BadPlan:
    name: str
    raw: str
    rule: str
    command_index: int | None
    field: str | None
    description: str | None = None  # the text the plan was made from, for rules that read it


def _bad_plans() -> list[BadPlan]:
    plans: list[BadPlan] = []
    add = plans.append
    # Every required parameter of every command, missing.
    for name, spec in CATALOG.commands.items():
        for param in spec.required_params:
            add(
                BadPlan(f"missing_{name}_{param}", _plan(_with(name, **{param: _DROP})), "missing_parameter", 0, param)
            )
    # Every parameter of every command, with a value of the wrong type.
    for name, spec in CATALOG.commands.items():
        for param, param_spec in spec.params.items():
            add(
                BadPlan(
                    f"type_{name}_{param}",
                    _plan(_with(name, **{param: WRONG_TYPE[param_spec.type]})),
                    "type",
                    0,
                    param,
                )
            )
    # Every command, with a parameter the catalog does not know.
    for name in CATALOG.commands:
        add(BadPlan(f"unknown_parameter_{name}", _plan(_with(name, speed=5)), "unknown_parameter", 0, "speed"))
    # Parameters only a channel command has, given to one that has none.
    add(BadPlan("channels_on_delay", _plan(_with("Delay", channels=[1])), "unknown_parameter", 0, "channels"))
    add(BadPlan("unknown_command", _plan(_cmd("Pipette", channels=[1])), "unknown_command", 0, None))
    add(
        BadPlan("lowercase_command", _plan(_cmd("getditi", ditiType="50ul", channels=[1])), "unknown_command", 0, None)
    )
    add(BadPlan("empty_plan", _plan(), "empty_plan", None, None))
    # Channels: range, duplicates, empty, non-integers.
    for bad, rule in [
        ([0], "channel_range"),
        ([9], "channel_range"),
        ([-1], "channel_range"),
        ([1, 1], "duplicate_channel"),
        ([], "empty_list"),
        ([1.5], "type"),
        (["1"], "type"),
        ([True], "type"),
    ]:
        add(BadPlan(f"channels_{bad}", _plan(_cmd("DropDiti", channels=bad)), rule, 0, "channels"))
    # Wells: every way a well name can be wrong, in every wells parameter.
    for well in ["I1", "A13", "A0", "a1", "A01", "", "A1 ", "AA1"]:
        add(
            BadPlan(
                f"well_{well!r}",
                _plan(_with("Aspirate", channels=[1], wells=[well], vols=[20])),
                "invalid_well",
                0,
                "wells",
            )
        )
    for param in ("srcWells", "dstWells"):
        add(BadPlan(f"well_{param}", _plan(_with("Transfer", **{param: ["A1", "Z9"]})), "invalid_well", 0, param))
    add(BadPlan("wells_empty", _plan(_with("Mix", wells=[])), "empty_list", 0, "wells"))
    # List lengths: one per channel, in every command that has per-channel lists.
    for name in ("Aspirate", "Dispense", "Mix"):
        add(BadPlan(f"length_wells_{name}", _plan(_with(name, wells=["A1"])), "length_mismatch", 0, "wells"))
        add(BadPlan(f"length_vols_{name}", _plan(_with(name, vols=[20, 20, 20])), "length_mismatch", 0, "vols"))
    for param in ("srcWells", "dstWells", "vols"):
        value = ["A1"] if param != "vols" else [20]
        add(
            BadPlan(
                f"length_{param}_Transfer", _plan(_with("Transfer", **{param: value})), "length_mismatch", 0, param
            )
        )
    # Volumes: positive, finite numbers.
    for vol in [0, -5, -0.1]:
        add(
            BadPlan(
                f"vol_{vol}",
                _plan(_with("Dispense", channels=[1], wells=["A1"], vols=[vol])),
                "volume_positive",
                0,
                "vols",
            )
        )
    add(BadPlan("vol_string", _plan(_with("Dispense", channels=[1], wells=["A1"], vols=["20ul"])), "type", 0, "vols"))
    add(BadPlan("vols_empty", _plan(_with("Transfer", vols=[])), "empty_list", 0, "vols"))
    # Tip types and tip capacity across the sequence.
    add(BadPlan("tip_type_unknown", _plan(_with("GetDiti", ditiType="20ul")), "tip_type", 0, "ditiType"))
    add(BadPlan("tip_type_case", _plan(_with("GetDiti", ditiType="50UL")), "tip_type", 0, "ditiType"))
    for tip, capacity in CATALOG.tip_types.items():
        add(BadPlan(
            f"tip_capacity_{tip}",
            _plan(_cmd("GetDiti", ditiType=tip, channels=[1]),
                  _with("Aspirate", channels=[1], wells=["A1"], vols=[capacity + 1])),
            "tip_capacity", 1, "vols",
        ))
    add(BadPlan(
        "tip_capacity_after_tip_change",
        _plan(_cmd("GetDiti", ditiType="1000ul", channels=[1]), _cmd("DropDiti", channels=[1]),
              _cmd("GetDiti", ditiType="10ul", channels=[1]),
              _with("Aspirate", channels=[1], wells=["A1"], vols=[500])),
        "tip_capacity", 3, "vols",
    ))
    add(BadPlan(
        "tip_capacity_per_channel",
        _plan(_cmd("GetDiti", ditiType="200ul", channels=[1]), _cmd("GetDiti", ditiType="10ul", channels=[2]),
              _with("Aspirate", channels=[1, 2], wells=["A1", "B1"], vols=[100, 100])),
        "tip_capacity", 2, "vols",
    ))
    add(BadPlan(
        "tip_capacity_on_dispense",
        _plan(_cmd("GetDiti", ditiType="50ul", channels=[1, 2]), _with("Dispense", vols=[20, 60])),
        "tip_capacity", 1, "vols",
    ))
    add(BadPlan(
        "tip_capacity_on_mix",
        _plan(_cmd("GetDiti", ditiType="10ul", channels=[1, 2]), _with("Mix", vols=[10, 11])),
        "tip_capacity", 1, "vols",
    ))
    add(BadPlan(
        "tip_capacity_on_transfer",
        _plan(_cmd("GetDiti", ditiType="10ul", channels=[1, 2]), _with("Transfer", vols=[5, 15])),
        "tip_capacity", 1, "vols",
    ))
    # Numeric ranges.
    for name, param, value in [
        ("Delay", "seconds", -1),
        ("Incubate", "seconds", -60),
        ("Shake", "seconds", -1),
        ("Incubate", "temperature", 3),
        ("Incubate", "temperature", 100.5),
        ("Shake", "rpm", 99),
        ("Shake", "rpm", 3001),
        ("Mix", "times", 0),
        ("Mix", "times", 51),
    ]:
        add(BadPlan(f"range_{name}_{param}_{value}", _plan(_with(name, **{param: value})), "range", 0, param))
    # Labels must say something.
    for name, param in [
        ("Aspirate", "labware"),
        ("PCR", "program"),
        ("MoveLabware", "position"),
        ("Transfer", "srcLabware"),
        ("Dispense", "liquidClass"),
    ]:
        add(BadPlan(f"empty_{name}_{param}", _plan(_with(name, **{param: "  "})), "empty_string", 0, param))
    # The bad command is found wherever it sits in a longer plan, and named by its own index.
    add(BadPlan(
        "bad_step_in_the_middle",
        _plan(_with("GetDiti"), _with("Aspirate"), _with("Dispense", wells=["A1", "B13"]), _with("DropDiti")),
        "invalid_well", 2, "wells",
    ))
    return plans


BAD_PLANS = _bad_plans()
# Labels holding line breaks, quotes or control characters (issue 6, item 8), once the validator has the rule.
LABEL_PLANS = [
    BadPlan("label_newline", _plan(_with("Aspirate", labware="Plate\n1")), "invalid_label", 0, "labware"),
    BadPlan("label_quote", _plan(_with("MoveLabware", position="Heater'; DROP")), "invalid_label", 0, "position"),
    BadPlan("label_nul", _plan(_with("PCR", program="PCR\u000035")), "invalid_label", 0, "program"),
]
def _ungrounded_plans() -> list[BadPlan]:
    """Every label field, invented: the description holds every other label of the plan, but not this one."""
    from data_contracts.validation import grounded_label_fields

    plans = []
    for name, params in VALID_PARAMS.items():
        labels = [param for param in params if param in grounded_label_fields()]
        description = "Run: " + ", ".join(str(params[param]) for param in labels)
        for param in labels:
            plan = _plan(_with(name, **{param: "Invented"}))
            plans.append(BadPlan(f"ungrounded_{name}_{param}", plan, "ungrounded_string", 0, param, description))
    return plans


# Labels the description does not contain (the catalog copies labels "exactly as written").
UNGROUNDED_PLANS = _ungrounded_plans()
UNPARSEABLE = [
    "",
    "GetDiti(ditiType='50ul', channels=[1])",
    '{"commands": [{"func_name": "Delay", "func_parameters": {"seconds": NaN}}]}',
    '{"commands": [{"func_name": "Delay", "func_parameters": {"seconds": 1e999}}]}',
    '{"commands": {"func_name": "Delay"}}',
    '{"commands": [{"func_name": "Delay", "func_parameters": {"seconds": 60}}]',
    '{"commands": [{"func_name": "Delay", "func_parameters": {"seconds": 60}, "extra": 1}]}',
    '{"commands": [{"func_name": "Delay", "func_parameters": {"seconds": {"value": 60}}}]}',
    '{"commands": [{"func_name": "Delay", "func_parameters": {"seconds": 60, "seconds": 1}}]}',
    "[" * 100_000,
]


def test_every_catalog_rule_has_a_bad_plan() -> None:
    from data_contracts import validation

    rules = {
        value
        for name, value in vars(validation).items()
        if name.isupper() and isinstance(value, str) and name != "DROP_TIPS_COMMAND"
    }
    covered = {plan.rule for plan in BAD_PLANS + LABEL_PLANS + UNGROUNDED_PLANS}
    assert rules <= covered, f"rules without a hand-written bad plan: {sorted(rules - covered)}"


def _assert_rejected(plan: BadPlan, checked: Any) -> None:
    assert not checked.catalog_valid
    matching = [
        issue for issue in checked.issues
        if issue.rule == plan.rule and issue.command_index == plan.command_index and issue.field == plan.field
    ]
    assert matching, [issue.to_dict() for issue in checked.issues]
    issue = matching[0]
    if plan.command_index is not None:
        name = json.loads(plan.raw)["commands"][plan.command_index]["func_name"]
        assert f"command {plan.command_index} ({name})" in issue.message
    if plan.field is not None:
        assert plan.field in issue.message
    message = checked.error_message()
    assert issue.message in message
    with pytest.raises(PlanRejected):
        checked.canonical_json()
    record = checked.output_record()
    assert set(record) == {"error"}
    assert record["error"]["raw_output"] == plan.raw
    assert "commands" not in json.loads(checked.output_line())


@pytest.mark.parametrize("plan", BAD_PLANS, ids=[p.name for p in BAD_PLANS])
def test_gate_rejects_bad_plan_naming_step_and_field(plan: BadPlan) -> None:
    _assert_rejected(plan, check_plan(plan.raw))


@pytest.mark.parametrize("plan", LABEL_PLANS, ids=[p.name for p in LABEL_PLANS])
def test_gate_rejects_labels_with_line_breaks_or_quotes(plan: BadPlan) -> None:
    _assert_rejected(plan, check_plan(plan.raw))


@pytest.mark.parametrize("plan", UNGROUNDED_PLANS, ids=[p.name for p in UNGROUNDED_PLANS])
def test_gate_rejects_labels_the_description_does_not_contain(plan: BadPlan) -> None:
    _assert_rejected(plan, check_plan(plan.raw, description=plan.description))
    assert check_plan(plan.raw).catalog_valid  # only the description makes it wrong
    command = json.loads(plan.raw)["commands"][0]["func_name"]
    grounded = check_plan(_plan(_with(command)), description=plan.description)
    assert grounded.catalog_valid, grounded.error_message()
    assert grounded.canonical_json() == _plan(_with(command))


def test_render_rechecks_grounding() -> None:
    """A plan whose issues were dropped after the gate still cannot be rendered with an invented label."""
    from dataclasses import replace

    plan = UNGROUNDED_PLANS[0]
    checked = check_plan(plan.raw, description=plan.description)
    with pytest.raises(PlanRejected):
        replace(checked, issues=()).canonical_json()


@pytest.mark.parametrize("raw", UNPARSEABLE, ids=range(len(UNPARSEABLE)))
def test_gate_rejects_output_that_is_not_a_plan_and_keeps_it(raw: str) -> None:
    checked = check_plan(raw)
    assert not checked.json_valid and not checked.catalog_valid
    assert checked.issues and checked.issues[0].rule == "json_parse"
    with pytest.raises(PlanRejected):
        checked.canonical_json()
    assert checked.output_record()["error"]["raw_output"] == raw


def _gold_plans() -> list[str]:
    lines = (FIXTURES / "sop_examples.jsonl").read_text(encoding="utf-8").splitlines()
    return [render_json_commands(parse_text_commands(json.loads(line)["conversation"][0]["output"])) for line in lines]


def _gold_descriptions() -> list[str]:
    lines = (FIXTURES / "sop_examples.jsonl").read_text(encoding="utf-8").splitlines()
    return [json.loads(line)["conversation"][0]["input"] for line in lines]


def test_gate_passes_every_gold_plan_unchanged() -> None:
    from pipelines.model.prompts import serving_user_message

    for raw, description in zip(_gold_plans(), _gold_descriptions(), strict=True):
        # grounded in the text the model reads: labels survive normalization verbatim
        checked = check_plan(raw, description=serving_user_message(description))
        assert checked.catalog_valid, checked.error_message()
        assert checked.canonical_json() == raw


def test_valid_plans_built_for_the_bad_cases_pass() -> None:
    """The baseline of every bad plan is valid, so each rejection above is caused by its one change."""
    for name in CATALOG.commands:
        checked = check_plan(_plan(_with(name)))
        assert checked.catalog_valid, checked.error_message()


# --- the output paths, end to end ----------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from pipelines.model.tiny_model import build_tiny_model

    return build_tiny_model(tmp_path_factory.mktemp("tiny_model"))


def _scripted_generation(monkeypatch: pytest.MonkeyPatch, outputs: dict[str, str]) -> None:
    """The model 'says' outputs[description]: generation is replaced, everything after it is real."""
    import pipelines.serve.decode as decode

    def fake_generate_batched(model, tokenizer, descriptions, config=None, on_batch=None):
        generations = [
            decode.Generation(text=outputs[d], token_ids=(), stopped=True, latency_s=0.0) for d in descriptions
        ]
        if on_batch is not None:
            on_batch(len(generations), len(generations))
        return generations

    monkeypatch.setattr(decode, "generate_batched", fake_generate_batched)


def _predict_args(model_dir: Path, description: str | None) -> Any:
    return predict_args(model_dir, description, "--batch-size", "4", "--max-new-tokens", "8", "--no-constrained")


def test_predict_cli_batch_never_prints_a_bad_plan_as_commands(tiny_model_dir: Path, monkeypatch) -> None:
    from pipelines.serve import predict
    good = _gold_plans()[0]
    plans = [
        BadPlan("good", good, "", None, None, _gold_descriptions()[0]),
        *BAD_PLANS,
        *LABEL_PLANS,
        *UNGROUNDED_PLANS,
    ]
    # predict checks labels against each description: the good plan gets its own, an ungrounded plan one
    # holding every label but the invented one, the rest a placeholder (only their own rule is asserted)
    descriptions = [plans[0].description] + [
        f"{plan.description or 'description'} (case {i})" for i, plan in enumerate(plans[1:], start=1)
    ]
    outputs = dict(zip(descriptions, (plan.raw for plan in plans), strict=True))
    _scripted_generation(monkeypatch, outputs)
    stdin = io.StringIO("\n".join(outputs) + "\n")
    stdout, stderr = io.StringIO(), io.StringIO()

    code = predict.run(_predict_args(tiny_model_dir, None), stdin=stdin, stdout=stdout, stderr=stderr)

    assert code == predict.EXIT_REJECTED
    records = [json.loads(line) for line in stdout.getvalue().splitlines()]
    assert len(records) == len(plans)
    assert records[0] == json.loads(good)
    for plan, record in zip(plans[1:], records[1:]):
        assert set(record) == {"error"}, (plan.name, record)
        assert record["error"]["raw_output"] == plan.raw
        if plan.rule != "invalid_label":
            assert any(
                issue["rule"] == plan.rule
                and issue["field"] == plan.field
                and issue["command_index"] == plan.command_index
                for issue in record["error"]["issues"]
            ), (plan.name, record["error"]["issues"])


def test_predict_cli_single_description_prints_nothing_for_a_bad_plan(tiny_model_dir: Path, monkeypatch) -> None:
    from pipelines.serve import predict
    plan = next(p for p in BAD_PLANS if p.name == "tip_capacity_after_tip_change")
    _scripted_generation(monkeypatch, {"行1:吸取500ul": plan.raw})
    stdout, stderr = io.StringIO(), io.StringIO()

    code = predict.run(_predict_args(tiny_model_dir, "行1:吸取500ul"), stdout=stdout, stderr=stderr)

    assert code == predict.EXIT_REJECTED
    assert stdout.getvalue() == ""
    assert "command 3 (Aspirate)" in stderr.getvalue() and "vols" in stderr.getvalue()
    assert json.dumps(plan.raw, ensure_ascii=False) in stderr.getvalue()


def test_regression_results_never_record_a_bad_plan_as_commands() -> None:
    """The regression asset's rows: an invalid plan keeps its raw output and error, but no predicted commands."""
    from data_contracts.commands import Command
    from pipelines.serve.eval_cases import EvalCase, evaluate_case
    from pipelines.serve.eval_tables import results_frame

    gold = tuple(parse_text_commands("Delay(seconds=60)"))
    results = [
        evaluate_case(
            EvalCase(case_id=plan.name, description="d", gold=gold, split_source="eval"), plan.raw, 0.0, 0, True
        )
        for plan in BAD_PLANS
    ]
    frame = results_frame(results, constrained=True)
    assert not frame["catalog_valid"].any()
    assert frame["predicted_json"].isna().all(), frame.loc[
        frame["predicted_json"].notna(), ["case_id", "predicted_json"]
    ]
    assert (frame["raw_output"] == [plan.raw for plan in BAD_PLANS]).all()
    for plan, error in zip(BAD_PLANS, frame["error"]):
        assert plan.rule in error
    assert Command  # the gold type is the shared Command


def test_every_module_that_generates_commands_goes_through_the_gate() -> None:
    """A new output path (a server, a batch job) that generates plans must import the gate too."""
    from tests.helpers import REPO_ROOT

    generating = []
    for path in sorted([*(REPO_ROOT / "pipelines").rglob("*.py"), *(REPO_ROOT / "assets").glob("*.py")]):
        text = path.read_text(encoding="utf-8")
        if path.name != "decode.py" and (
            "generate_batched" in text or "generate_one_by_one" in text or ".generate(" in text
        ):
            generating.append(path.name)
            assert "plan_output" in text or "pipelines.serve.evaluate" in text, (
                f"{path.name} generates commands without pipelines.serve.plan_output"
            )
    assert {"predict.py", "evaluate.py"} <= set(generating)
