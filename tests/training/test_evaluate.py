"""Metric functions and per-case checks on hand-made fixtures, with exact expected numbers."""

from __future__ import annotations

import json

import pytest

from data_contracts.commands import Command
from data_contracts.forms import render_json_commands
from pipelines.evaluate import (
    NONE,
    CaseResult,
    EvalCase,
    append_failures,
    command_prf,
    compute_metrics,
    confusion_counts,
    confusion_markdown,
    eval_settings,
    evaluate_case,
    field_accuracy,
    gate_thresholds,
    latency_summary,
    percentile,
    rate,
    read_mismatched_cases,
    regression_set,
    results_frame,
)


def tips(channels: list[int], tip: str = "200ul") -> Command:
    return Command(func_name="GetDiti", func_parameters={"ditiType": tip, "channels": channels})


def aspirate(vols: list[float], labware: str = "P1", wells: list[str] | None = None) -> Command:
    channels = list(range(1, len(vols) + 1))
    wells = wells or [f"{'ABCDEFGH'[i]}1" for i in range(len(vols))]
    return Command(func_name="Aspirate", func_parameters={"channels": channels, "labware": labware, "wells": wells, "vols": vols})


def drop(channels: list[int]) -> Command:
    return Command(func_name="DropDiti", func_parameters={"channels": channels})


def delay(seconds: int) -> Command:
    return Command(func_name="Delay", func_parameters={"seconds": seconds})


def as_json(commands: list[Command]) -> str:
    return render_json_commands(commands)


# Four cases: exact, wrong value, wrong commands, unparseable.
GOLD = [
    [tips([1, 2]), aspirate([20, 20]), drop([1, 2])],
    [delay(60)],
    [tips([1]), drop([1])],
    [delay(30)],
]
RAW = [
    # same plan, parameters in another order and 20.0 for 20: still an exact match
    json.dumps({"commands": [
        {"func_name": "GetDiti", "func_parameters": {"channels": [1, 2], "ditiType": "200ul"}},
        {"func_name": "Aspirate", "func_parameters": {"vols": [20.0, 20], "wells": ["A1", "B1"], "labware": "P1", "channels": [1, 2]}},
        {"func_name": "DropDiti", "func_parameters": {"channels": [1, 2]}},
    ]}),
    as_json([delay(120)]),
    as_json([tips([1]), delay(5), delay(5)]),
    '{"commands": [{"func_name": "Delay"',
]


def make_results() -> list[CaseResult]:
    cases = [EvalCase(case_id=f"eval:c{i}", description=f"case {i}", gold=tuple(g), split_source="eval", source_index=f"c{i}") for i, g in enumerate(GOLD)]
    latencies = [1.0, 2.0, 3.0, 4.0]
    return [evaluate_case(case, raw, latency, 10 * (i + 1), True) for i, (case, raw, latency) in enumerate(zip(cases, RAW, latencies))]


def test_per_case_checks_parse_validate_compare():
    results = make_results()
    assert [r.checked.json_valid for r in results] == [True, True, True, False]
    assert [r.checked.catalog_valid for r in results] == [True, True, True, False]
    assert [r.exact_match for r in results] == [True, False, False, False]
    assert results[3].checked.issues[0].rule == "json_parse"


def test_exact_match_requires_order_and_catalog_validity():
    case = EvalCase("eval:x", "x", (tips([1]), aspirate([20])), "eval")
    swapped = evaluate_case(case, as_json([aspirate([20]), tips([1])]), 0.1, 5, True)
    assert swapped.checked.catalog_valid and not swapped.exact_match
    # gold itself over tip capacity: an identical but invalid prediction is not counted as a match
    bad_case = EvalCase("eval:y", "y", (tips([1], "10ul"), aspirate([20])), "eval")
    same_bad = evaluate_case(bad_case, as_json([tips([1], "10ul"), aspirate([20])]), 0.1, 5, True)
    assert not same_bad.checked.catalog_valid and not same_bad.exact_match


def test_rates_on_fixture():
    metrics = compute_metrics(make_results(), wall_s=8.0)
    assert metrics.n_cases == 4
    assert metrics.json_valid_rate == 0.75
    assert metrics.catalog_valid_rate == 0.75
    assert metrics.exact_match == 0.25
    assert metrics.mean_new_tokens == 25.0
    assert rate([]) == 0.0


def test_command_precision_recall_f1_on_multisets():
    gold = [["GetDiti", "Aspirate", "DropDiti"], ["Delay"], ["GetDiti", "DropDiti"], ["Delay"]]
    predicted = [["GetDiti", "Aspirate", "DropDiti"], ["Delay"], ["GetDiti", "Delay", "Delay"], None]
    scores = command_prf(gold, predicted)
    assert (scores["GetDiti"].tp, scores["GetDiti"].fp, scores["GetDiti"].fn) == (2, 0, 0)
    assert (scores["DropDiti"].tp, scores["DropDiti"].fp, scores["DropDiti"].fn) == (1, 0, 1)
    assert scores["DropDiti"].precision == 1.0 and scores["DropDiti"].recall == 0.5
    assert scores["DropDiti"].f1 == pytest.approx(2 / 3)
    # Delay: case 2 tp 1; case 3 two spurious; case 4 unparseable -> its gold Delay is missed
    assert (scores["Delay"].tp, scores["Delay"].fp, scores["Delay"].fn) == (1, 2, 1)
    assert scores["Delay"].precision == pytest.approx(1 / 3) and scores["Delay"].recall == 0.5
    micro = scores["micro"]
    assert (micro.tp, micro.fp, micro.fn) == (5, 2, 2)
    assert micro.precision == pytest.approx(5 / 7) and micro.recall == pytest.approx(5 / 7)
    assert micro.f1 == pytest.approx(5 / 7)


def test_prf_zero_denominators_are_zero():
    scores = command_prf([["Delay"]], [None])
    assert scores["Delay"].precision == 0.0 and scores["Delay"].recall == 0.0 and scores["Delay"].f1 == 0.0


def test_field_accuracy_on_matched_commands():
    results = make_results()
    fields = field_accuracy([r.case.gold for r in results], [r.predicted for r in results])
    # matched pairs: case0 GetDiti, Aspirate, DropDiti (all equal); case1 Delay (seconds wrong);
    # case2 position 0 GetDiti (equal); position 1 DropDiti vs Delay is not matched; case3 unparseable.
    assert fields["channels"].correct == 4 and fields["channels"].total == 4
    assert fields["ditiType"].correct == 2 and fields["ditiType"].total == 2
    assert fields["vols"].accuracy == 1.0
    assert fields["seconds"].correct == 0 and fields["seconds"].total == 1
    assert set(fields) == {"channels", "ditiType", "labware", "wells", "vols", "seconds"}


def test_field_accuracy_counts_missing_and_extra_parameters():
    gold = [[Command(func_name="Aspirate", func_parameters={"channels": [1], "labware": "P", "wells": ["A1"], "vols": [5]})]]
    predicted = [[Command(func_name="Aspirate", func_parameters={"channels": [1], "labware": "Q", "wells": ["A1"], "vols": [5], "liquidClass": "Water"})]]
    fields = field_accuracy(gold, predicted)
    assert fields["labware"].accuracy == 0.0
    assert fields["liquidClass"].correct == 0 and fields["liquidClass"].total == 1
    assert fields["vols"].accuracy == 1.0


def test_confusion_aligned_by_position():
    gold = [["GetDiti", "Aspirate"], ["Delay"], ["Delay"]]
    predicted = [["GetDiti", "Dispense", "DropDiti"], None, ["Delay"]]
    counts = confusion_counts(gold, predicted)
    assert counts == {
        ("GetDiti", "GetDiti"): 1,
        ("Aspirate", "Dispense"): 1,
        (NONE, "DropDiti"): 1,
        ("Delay", NONE): 1,
        ("Delay", "Delay"): 1,
    }
    table = confusion_markdown(counts)
    assert table.splitlines()[0] == "| gold \\ predicted | Delay | Dispense | DropDiti | GetDiti | <none> |"
    assert "| Delay | 1 | 0 | 0 | 0 | 1 |" in table


def test_latency_percentiles_and_throughput():
    assert percentile([1.0, 2.0, 3.0, 4.0], 50) == 2.5
    assert percentile([1.0, 2.0, 3.0, 4.0], 95) == pytest.approx(3.85)
    assert percentile([7.0], 95) == 7.0
    summary = latency_summary([4.0, 1.0, 3.0, 2.0], wall_s=8.0)
    assert summary.p50_s == 2.5 and summary.mean_s == 2.5 and summary.cases_per_s == 0.5
    assert compute_metrics(make_results(), wall_s=2.0).latency.cases_per_s == 2.0


def test_results_frame_meets_the_table_contract():
    from data_contracts.tables import RegressionResultTable

    frame = results_frame(make_results(), constrained=True)
    RegressionResultTable.validate(frame, lazy=True)
    assert frame["predicted_json"].isna().tolist() == [False, False, False, True]
    assert frame["error"].isna().tolist() == [True, True, True, False]
    assert "json_parse" in frame.loc[3, "error"]
    assert frame.loc[3, "raw_output"] == RAW[3]


def test_regression_set_and_failure_file(tmp_path):
    path = tmp_path / "mismatched_cases.jsonl"
    path.write_text(
        json.dumps({"conversation": [{"input": "行1:等待1分钟", "output": "Delay(seconds=60)"}], "id": "m1"}, ensure_ascii=False) + "\n",
        encoding="utf-8",
    )
    mismatched = read_mismatched_cases(path)
    assert [c.description for c in mismatched] == ["等待1分钟"]  # normalized like the corpus: step prefix stripped
    eval_cases = [EvalCase("eval:a", "等待1分钟", (delay(60),), "eval", "a"), EvalCase("eval:b", "b", (delay(5),), "eval", "b")]
    cases = regression_set(eval_cases, mismatched)
    assert [c.case_id for c in cases] == ["eval:a", "eval:b"]  # the mismatched duplicate of eval:a is dropped

    results = [evaluate_case(c, as_json([delay(1)]), 0.1, 3, True) for c in cases]
    before = path.read_text(encoding="utf-8")
    assert append_failures(path, results) == 1  # eval:a is already in the file
    text = path.read_text(encoding="utf-8")
    assert text.startswith(before)
    assert json.loads(text.splitlines()[-1]) == {"conversation": [{"input": "b", "output": "Delay(seconds=5)"}], "id": "b"}
    assert append_failures(path, results) == 0  # no duplicates on a second run
    assert path.read_text(encoding="utf-8") == text


def test_bad_mismatched_line_is_named(tmp_path):
    path = tmp_path / "m.jsonl"
    path.write_text('{"conversation": [{"input": "x", "output": "__import__(\'os\')"}], "id": "z"}\n', encoding="utf-8")
    with pytest.raises(ValueError, match="m.jsonl:1"):
        read_mismatched_cases(path)


def test_settings_per_profile_and_gate():
    sections = {
        "eval": {"batch_size": 4, "limits": {"max_commands": 8, "max_number": 10}, "profiles": {"smoke": {"max_new_tokens": 9, "limits": {"max_commands": 2}}}},
        "gate": {"default": {"min_exact_match": 0.5}, "smoke": {"min_json_valid_rate": 1.0, "min_catalog_valid_rate": 0.0}},
    }
    smoke = eval_settings(sections, "smoke")
    assert (smoke.batch_size, smoke.max_new_tokens, smoke.limits) == (4, 9, {"max_commands": 2, "max_number": 10})
    assert smoke.decoding_config().limits.max_commands == 2
    gate = gate_thresholds(sections, "gpu")  # falls back to gate.default
    assert gate.min_exact_match == 0.5
    assert gate.failures({"json_valid_rate": 1.0, "catalog_valid_rate": 1.0, "exact_match": 0.25}) == ["exact_match 0.2500 < 0.5"]
    assert gate_thresholds(sections, "smoke").failures({"json_valid_rate": 1.0, "catalog_valid_rate": 0.0, "exact_match": 0.0}) == []
    with pytest.raises(ValueError, match="unknown keys"):
        eval_settings({"eval": {"batchsize": 3}}, "default")


def test_results_frame_never_renders_a_rejected_plan():
    case = EvalCase("eval:y", "y", (tips([1], "10ul"),), "eval")
    raw = as_json([tips([1], "10ul"), aspirate([20])])  # parses, breaks tip capacity
    frame = results_frame([evaluate_case(case, raw, 0.1, 5, True)], constrained=True)
    assert frame.loc[0, "json_valid"] and not frame.loc[0, "catalog_valid"]
    assert frame["predicted_json"].isna().all()
    assert frame.loc[0, "raw_output"] == raw and "tip_capacity" in frame.loc[0, "error"]
