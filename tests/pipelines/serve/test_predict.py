"""The predict CLI and the output gate it shares with every output path.

A tiny model whose greedy output is set by its weights (`build_scripted_model`) writes a valid plan for
one description and a plan that parses but breaks tip capacity for another, so both the printing path
and the refusing path run on real generation, and give the same output on every CPU. Hand-written bad
plans then go through the gate directly, one per catalog rule.
"""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest

from data_contracts.commands import Command
from data_contracts.forms import render_json_commands
from pipelines.model.plan_layout import render_commands
from pipelines.serve.plan_output import PlanRejected, check_commands, check_plan
from tests.helpers import predict_args

VALID_DESCRIPTION = "Wait 5 minutes"
VALID_PLAN = [Command(func_name="Delay", func_parameters={"seconds": 300})]
# The labware and well are written in the description, so the plan breaks one rule only: tip capacity.
BAD_DESCRIPTION = "行1:用通道1从P1的A1吸取50微升，超出10ul枪头"
BAD_PLAN = [  # 50 ul into a 10 ul tip: parses, and the grammar allows it; only the validator catches it
    Command(func_name="GetDiti", func_parameters={"ditiType": "10ul", "channels": [1]}),
    Command(func_name="Aspirate", func_parameters={"channels": [1], "labware": "P1", "wells": ["A1"], "vols": [50]}),
]


@pytest.fixture(scope="module")
def scripted_model(tmp_path_factory) -> Path:
    """Writes BAD_PLAN for BAD_DESCRIPTION and VALID_PLAN for any other description."""
    from pipelines.model.tiny_model import build_scripted_model

    return build_scripted_model(
        tmp_path_factory.mktemp("scripted"),
        default_output=render_commands(VALID_PLAN),
        triggered_output=render_commands(BAD_PLAN),
        trigger_description=BAD_DESCRIPTION,
        default_description=VALID_DESCRIPTION,
    )


def predict(model_dir: Path, description: str | None, stdin: bytes = b"", **options) -> tuple[int, str, str]:
    from pipelines.serve.predict import run

    flags = ["--batch-size", str(options.get("batch_size", 2))]
    flags += ["--max-new-tokens", str(options.get("max_new_tokens", 160))]
    flags += [] if options.get("constrained", True) else ["--no-constrained"]
    args = predict_args(model_dir, description, *flags)
    stdout, stderr = io.StringIO(), io.StringIO()
    code = run(args, stdin=io.BytesIO(stdin), stdout=stdout, stderr=stderr)
    return code, stdout.getvalue(), stderr.getvalue()


def test_single_prints_canonical_valid_json(scripted_model):
    code, out, err = predict(scripted_model, VALID_DESCRIPTION)
    assert code == 0, err
    assert out == render_json_commands(VALID_PLAN) + "\n"


def test_single_refuses_a_plan_that_breaks_the_catalog(scripted_model):
    code, out, err = predict(scripted_model, BAD_DESCRIPTION)
    assert code == 1
    assert out == ""  # nothing that could reach the robot
    assert "rule tip_capacity" in err and "Aspirate" in err and "'vols'" in err
    assert "raw model output" in err and "GetDiti" in err  # the raw output is kept for inspection


def test_batch_keeps_one_line_per_input_in_order(scripted_model):
    lines = [VALID_DESCRIPTION, BAD_DESCRIPTION, "", VALID_DESCRIPTION + "\r", "x" * 5000]
    stdin = "\n".join(lines).encode("utf-8") + b"\n\xff\xfe\n"  # the last line is not UTF-8
    code, out, err = predict(scripted_model, None, stdin=stdin, batch_size=2)
    records = [json.loads(line) for line in out.split("\n")[:-1]]
    assert out.endswith("\n") and len(records) == 6
    assert records[0] == json.loads(render_json_commands(VALID_PLAN))
    assert records[3] == records[0]
    assert records[1]["error"]["issues"][0]["rule"] == "tip_capacity"
    assert records[1]["error"]["issues"][0]["field"] == "vols"
    assert records[1]["error"]["raw_output"] == render_commands(BAD_PLAN)  # kept verbatim, in the model's layout
    assert records[2]["error"]["issues"][0]["rule"] == "invalid_input"
    assert "limit of 4000" in records[4]["error"]["message"]
    assert "UTF-8" in records[5]["error"]["message"]
    assert code == 1 and "4 of 6" in err


def test_batch_all_valid_exits_zero(scripted_model):
    code, out, _ = predict(scripted_model, None, stdin=(VALID_DESCRIPTION + "\n").encode() * 3, batch_size=2)
    assert code == 0 and out == (render_json_commands(VALID_PLAN) + "\n") * 3


def test_cli_entry_point_parses_options(scripted_model):
    from pipelines.cli import build_parser

    args = build_parser().parse_args(
        ["predict", "--model", str(scripted_model), "--no-constrained", "--max-new-tokens", "7", "x"]
    )
    assert (args.constrained, args.max_new_tokens, args.batch_size, args.description) == (False, 7, 16, "x")


def test_scripted_model_wins_every_greedy_step_by_a_wide_margin(scripted_model):
    """The outputs above hold on any CPU only if no greedy step is a near tie: each pick beats the
    runner-up at least fourfold (logits here are never negative), far beyond what float rounding moves."""
    import torch

    from pipelines.model.model_io import eoc_token_id, load_model_and_tokenizer
    from pipelines.model.prompts import build_prompt_ids, serving_user_message

    model, tokenizer = load_model_and_tokenizer(scripted_model)
    eoc = eoc_token_id(tokenizer)
    for description, plan in ((VALID_DESCRIPTION, VALID_PLAN), (BAD_DESCRIPTION, BAD_PLAN)):
        ids = build_prompt_ids(tokenizer, serving_user_message(description))
        generated: list[int] = []
        with torch.no_grad():
            while eoc not in generated and len(generated) < 64:
                top = model(input_ids=torch.tensor([ids + generated])).logits[0, -1].topk(2)
                best, runner_up = top.values.tolist()
                assert best > 0 and best >= 4 * runner_up, (description, len(generated), best, runner_up)
                generated.append(int(top.indices[0]))
        assert generated[-1] == eoc
        assert tokenizer.decode(generated[:-1]) == render_commands(plan)


def test_unsafe_model_dir_is_refused(tmp_path):
    (tmp_path / "config.json").write_text("{}", encoding="utf-8")
    (tmp_path / "pytorch_model.bin").write_bytes(b"\x80\x04")
    code, out, err = predict(tmp_path, VALID_DESCRIPTION)
    assert code == 2 and out == "" and "pickle" in err


# --- the gate itself: hand-written bad plans, one per rule ------------------------------------

ASP = {"channels": [1, 2], "labware": "P1", "wells": ["A1", "B1"], "vols": [10, 10]}
BAD_PLANS = [
    ("unknown_command", None, [{"func_name": "Explode", "func_parameters": {}}]),
    ("unknown_parameter", "speed", [{"func_name": "Delay", "func_parameters": {"seconds": 5, "speed": 1}}]),
    ("missing_parameter", "seconds", [{"func_name": "Delay", "func_parameters": {}}]),
    ("type", "seconds", [{"func_name": "Delay", "func_parameters": {"seconds": "5"}}]),
    ("channel_range", "channels", [{"func_name": "DropDiti", "func_parameters": {"channels": [9]}}]),
    ("duplicate_channel", "channels", [{"func_name": "DropDiti", "func_parameters": {"channels": [1, 1]}}]),
    ("invalid_well", "wells", [{"func_name": "Aspirate", "func_parameters": {**ASP, "wells": ["A1", "Z9"]}}]),
    ("length_mismatch", "vols", [{"func_name": "Aspirate", "func_parameters": {**ASP, "vols": [10]}}]),
    ("volume_positive", "vols", [{"func_name": "Aspirate", "func_parameters": {**ASP, "vols": [10, -1]}}]),
    ("tip_type", "ditiType", [{"func_name": "GetDiti", "func_parameters": {"ditiType": "7ul", "channels": [1]}}]),
    ("range", "rpm", [{"func_name": "Shake", "func_parameters": {"labware": "P", "rpm": 5, "seconds": 1}}]),
    ("empty_string", "labware", [{"func_name": "PCR", "func_parameters": {"labware": " ", "program": "x"}}]),
    ("empty_list", "channels", [{"func_name": "DropDiti", "func_parameters": {"channels": []}}]),
    ("empty_plan", None, []),
    ("tip_capacity", "vols", [
        {"func_name": "GetDiti", "func_parameters": {"ditiType": "10ul", "channels": [1, 2]}},
        {"func_name": "Aspirate", "func_parameters": ASP | {"vols": [10, 11]}},
    ]),
]


@pytest.mark.parametrize("rule,field,plan", BAD_PLANS, ids=[rule for rule, _, _ in BAD_PLANS])
def test_gate_rejects_each_rule_with_its_field(rule, field, plan):
    raw = json.dumps({"commands": plan})
    checked = check_plan(raw)
    assert checked.json_valid and not checked.catalog_valid
    matching = [issue for issue in checked.issues if issue.rule == rule]
    assert matching, checked.error_message()
    if field is not None:
        assert any(issue.field == field for issue in matching)
    with pytest.raises(PlanRejected):
        checked.canonical_json()
    record = json.loads(checked.output_line())
    assert set(record) == {"error"} and record["error"]["raw_output"] == raw
    assert f"rule {rule}" in record["error"]["message"]


def test_gate_rejects_output_that_is_not_a_plan():
    for raw in [
        "",
        "{",
        '{"commands": 5}',
        "Delay(seconds=5)",
        '{"commands": [{"func_name": "Delay", "func_parameters": {"seconds": NaN}}]}',
    ]:
        checked = check_plan(raw)
        assert not checked.json_valid and checked.issues[0].rule == "json_parse"
        assert "error" in checked.output_record()


def test_gate_passes_valid_plans_in_canonical_form():
    raw = '{"commands": [{"func_name": "Delay", "func_parameters": {"seconds": 300.0}}]}'
    assert check_plan(raw).output_line() == render_json_commands(VALID_PLAN)
    assert check_commands(VALID_PLAN).output_record() == json.loads(render_json_commands(VALID_PLAN))


def test_module_entry_point_end_to_end(scripted_model):
    import os
    import subprocess
    import sys

    from tests.helpers import REPO_ROOT

    command = [sys.executable, "-m", "pipelines", "predict", "--model", str(scripted_model), "--max-new-tokens", "160"]
    done = subprocess.run(command, input="\n".join([VALID_DESCRIPTION, BAD_DESCRIPTION]) + "\n", capture_output=True,
                          text=True, cwd=REPO_ROOT, timeout=300, env={**os.environ, "OMP_NUM_THREADS": "1"})
    lines = done.stdout.splitlines()
    assert done.returncode == 1 and len(lines) == 2
    assert lines[0] == render_json_commands(VALID_PLAN)
    assert json.loads(lines[1])["error"]["issues"][0]["rule"] == "tip_capacity"


def test_batch_progress_bar_is_on_stderr_and_stdout_keeps_only_the_records(scripted_model):
    from pipelines.serve.predict import run

    stdin = "\n".join([VALID_DESCRIPTION, "", VALID_DESCRIPTION, VALID_DESCRIPTION]).encode("utf-8") + b"\n"

    def batch(progress: bool) -> tuple[int, str, str]:
        flags = ["--batch-size", "2", "--max-new-tokens", "160", *([] if progress else ["--no-progress"])]
        args = predict_args(scripted_model, None, *flags)
        stdout, stderr = io.StringIO(), io.StringIO()
        return run(args, stdin=io.BytesIO(stdin), stdout=stdout, stderr=stderr), stdout.getvalue(), stderr.getvalue()

    code, out, err = batch(progress=True)
    records = [json.loads(line) for line in out.splitlines()]
    assert code == 1 and len(records) == 4 and out.count("\n") == 4
    assert records[1]["error"]["issues"][0]["rule"] == "invalid_input"
    assert "predict" in err and "4/4" in err  # the bar reached every input line
    _, quiet_out, quiet_err = batch(progress=False)
    assert quiet_out == out and "4/4" not in quiet_err


def test_predict_lines_reports_progress_once_per_generated_batch(scripted_model):
    from pipelines.model.model_io import load_model_and_tokenizer
    from pipelines.serve.decode import DecodingConfig
    from pipelines.serve.predict import predict_lines

    model, tokenizer = load_model_and_tokenizer(scripted_model)
    done: list[int] = []
    descriptions = [VALID_DESCRIPTION, " ", BAD_DESCRIPTION, VALID_DESCRIPTION]
    plans = predict_lines(model, tokenizer, descriptions, DecodingConfig(max_new_tokens=160, batch_size=2),
                          on_done=done.append)
    assert done == [1, 2, 1]  # the blank line at once, then one call per batch of two and the rest
    assert [plan.catalog_valid for plan in plans] == [True, False, False, True]
    assert plans[2].issues[0].rule == "tip_capacity"
