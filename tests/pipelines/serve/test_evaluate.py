"""Evaluation on hand-made fixtures, with exact expected numbers: per-case checks (eval_cases), the slices and
the mismatched-cases file (eval_slices), the metrics (eval_metrics), the tables (eval_tables), the run (evaluate)."""

from __future__ import annotations

import json

import pytest

from data_contracts.commands import Command
from data_contracts.forms import render_json_commands
from pipelines.config import parse_eval, parse_gate, thresholds_for
from pipelines.data.normalize import normalize_text
from pipelines.serve.eval_cases import SLICES, CaseResult, EvalCase, evaluate_case
from pipelines.serve.eval_metrics import (
    NONE,
    command_prf,
    compute_metrics,
    confusion_counts,
    field_accuracy,
    latency_summary,
    rate,
    rates_by_slice,
)
from pipelines.serve.eval_slices import (
    append_failures,
    cap_cases,
    evaluation_slices,
    read_cases,
    read_mismatched_cases,
    regression_set,
)
from pipelines.serve.eval_tables import (
    COMMAND_COLUMNS,
    CONFUSION_GOLD_COLUMN,
    FIELD_COLUMNS,
    METRIC_COLUMNS,
    command_rows,
    confusion_table,
    field_rows,
    metric_rows,
    results_frame,
)


def tips(channels: list[int], tip: str = "200ul") -> Command:
    return Command(func_name="GetDiti", func_parameters={"ditiType": tip, "channels": channels})


def aspirate(vols: list[float], labware: str = "P1", wells: list[str] | None = None) -> Command:
    channels = list(range(1, len(vols) + 1))
    wells = wells or [f"{'ABCDEFGH'[i]}1" for i in range(len(vols))]
    return Command(
        func_name="Aspirate", func_parameters={"channels": channels, "labware": labware, "wells": wells, "vols": vols}
    )


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
    json.dumps(
        {
            "commands": [
                {"func_name": "GetDiti", "func_parameters": {"channels": [1, 2], "ditiType": "200ul"}},
                {
                    "func_name": "Aspirate",
                    "func_parameters": {
                        "vols": [20.0, 20],
                        "wells": ["A1", "B1"],
                        "labware": "P1",
                        "channels": [1, 2],
                    },
                },
                {"func_name": "DropDiti", "func_parameters": {"channels": [1, 2]}},
            ]
        }
    ),
    as_json([delay(120)]),
    as_json([tips([1]), delay(5), delay(5)]),
    '{"commands": [{"func_name": "Delay"',
]


def make_results() -> list[CaseResult]:
    # Every label of the gold plans (labware P1) occurs in the description, so the gold plans are grounded.
    cases = [
        EvalCase(
            case_id=f"eval:c{i}",
            description=f"case {i} on P1",
            gold=tuple(g),
            split_source="eval",
            source_index=f"c{i}",
        )
        for i, g in enumerate(GOLD)
    ]
    latencies = [1.0, 2.0, 3.0, 4.0]
    return [
        evaluate_case(case, raw, latency, 10 * (i + 1), True)
        for i, (case, raw, latency) in enumerate(zip(cases, RAW, latencies))
    ]


def test_per_case_checks_parse_validate_compare():
    results = make_results()
    assert [r.checked.json_valid for r in results] == [True, True, True, False]
    assert [r.checked.catalog_valid for r in results] == [True, True, True, False]
    assert [r.exact_match for r in results] == [True, False, False, False]
    assert results[3].checked.issues[0].rule == "json_parse"


def test_exact_match_requires_order_and_catalog_validity():
    case = EvalCase("eval:x", "x from P1", (tips([1]), aspirate([20])), "eval")
    swapped = evaluate_case(case, as_json([aspirate([20]), tips([1])]), 0.1, 5, True)
    assert swapped.checked.catalog_valid and not swapped.exact_match
    # gold itself over tip capacity: an identical but invalid prediction is not counted as a match
    bad_case = EvalCase("eval:y", "y from P1", (tips([1], "10ul"), aspirate([20])), "eval")
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
    gold = [
        [
            Command(
                func_name="Aspirate", func_parameters={"channels": [1], "labware": "P", "wells": ["A1"], "vols": [5]}
            )
        ]
    ]
    predicted = [
        [
            Command(
                func_name="Aspirate",
                func_parameters={
                    "channels": [1],
                    "labware": "Q",
                    "wells": ["A1"],
                    "vols": [5],
                    "liquidClass": "Water",
                },
            )
        ]
    ]
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
    columns, rows = confusion_table(counts)
    assert CONFUSION_GOLD_COLUMN == "gold \\ predicted"
    assert [column[0] for column in columns] == [
        CONFUSION_GOLD_COLUMN,
        "Delay",
        "Dispense",
        "DropDiti",
        "GetDiti",
        NONE,
    ]
    assert {CONFUSION_GOLD_COLUMN: "Delay", "Delay": 1, "Dispense": 0, "DropDiti": 0, "GetDiti": 0, NONE: 1} in rows


def test_latency_percentiles_and_throughput():
    assert latency_summary([1.0, 2.0, 3.0, 4.0], wall_s=1.0).p50_s == 2.5
    assert latency_summary([1.0, 2.0, 3.0, 4.0], wall_s=1.0).p95_s == pytest.approx(3.85)
    assert latency_summary([7.0], wall_s=1.0).p95_s == 7.0
    assert latency_summary([], wall_s=1.0) == latency_summary([], wall_s=0.0)  # nothing ran: all zeros
    assert latency_summary([], wall_s=1.0).p95_s == 0.0
    summary = latency_summary([4.0, 1.0, 3.0, 2.0], wall_s=8.0)
    assert summary.p50_s == 2.5 and summary.mean_s == 2.5 and summary.cases_per_s == 0.5
    assert compute_metrics(make_results(), wall_s=2.0).latency.cases_per_s == 2.0


def test_metric_tables_have_their_declared_columns():
    metrics = compute_metrics(make_results(), wall_s=8.0)
    tables = [(metric_rows(metrics), METRIC_COLUMNS), (command_rows(metrics), COMMAND_COLUMNS),
              (field_rows(metrics), FIELD_COLUMNS)]
    for rows, columns in tables:
        assert rows and all(list(row) == [column[0] for column in columns] for row in rows)
    assert {"metric": "exact_match", "value": 0.25} in metric_rows(metrics)
    micro = next(row for row in command_rows(metrics) if row["command"] == "micro")
    assert (micro["tp"], micro["fp"], micro["fn"]) == (5, 2, 2)
    seconds = next(row for row in field_rows(metrics) if row["field"] == "seconds")
    assert (seconds["correct"], seconds["trials"], seconds["accuracy"]) == (0, 1, 0.0)


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
        json.dumps(
            {"conversation": [{"input": "行1:等待1分钟", "output": "Delay(seconds=60)"}], "id": "m1"},
            ensure_ascii=False,
        )
        + "\n",
        encoding="utf-8",
    )
    mismatched = read_mismatched_cases(path)
    # normalized like the corpus (step prefix stripped); the text as written is kept for the phenomena tags
    assert [c.description for c in mismatched] == [normalize_text("等待1分钟")]
    assert not mismatched[0].description.startswith("行1")
    assert [c.raw_description for c in mismatched] == ["行1:等待1分钟"]
    eval_cases = [
        EvalCase("eval:a", normalize_text("等待1分钟"), (delay(60),), "eval", "a"),
        EvalCase("eval:b", "b", (delay(5),), "eval", "b"),
    ]
    cases = regression_set(eval_cases, mismatched)
    assert [c.case_id for c in cases] == ["eval:a", "eval:b"]  # the mismatched duplicate of eval:a is dropped

    results = [evaluate_case(c, as_json([delay(1)]), 0.1, 3, True) for c in cases]
    before = path.read_text(encoding="utf-8")
    assert append_failures(path, results) == 1  # eval:a is already in the file
    text = path.read_text(encoding="utf-8")
    assert text.startswith(before)
    assert json.loads(text.splitlines()[-1]) == {
        "conversation": [{"input": "b", "output": "Delay(seconds=5)"}],
        "id": "b",
    }
    assert append_failures(path, results) == 0  # no duplicates on a second run
    assert path.read_text(encoding="utf-8") == text


def test_bad_mismatched_line_is_named(tmp_path):
    path = tmp_path / "m.jsonl"
    path.write_text(
        '{"conversation": [{"input": "x", "output": "__import__(\'os\')"}], "id": "z"}\n', encoding="utf-8"
    )
    with pytest.raises(ValueError, match="m.jsonl:1"):
        read_mismatched_cases(path)


def test_settings_per_profile_and_gate():
    sections = {
        "eval": {
            "batch_size": 4,
            "limits": {"max_commands": 8, "max_number": 10},
            "profiles": {"smoke": {"max_new_tokens": 9, "limits": {"max_commands": 2}}},
        },
        "gate": {
            "default": {"min_exact_match": 0.5},
            "smoke": {"min_json_valid_rate": 1.0, "min_catalog_valid_rate": 0.0},
        },
    }
    smoke = parse_eval(sections["eval"]).for_profile("smoke")
    assert (smoke.batch_size, smoke.max_new_tokens, smoke.limits) == (4, 9, {"max_commands": 2, "max_number": 10})
    assert smoke.decoding_config().limits.max_commands == 2
    gate = thresholds_for(parse_gate(sections["gate"]), "gpu")  # falls back to gate.default
    assert gate.min_exact_match == 0.5
    assert gate.failures({"json_valid_rate": 1.0, "catalog_valid_rate": 1.0, "exact_match": 0.25}) == [
        "exact_match 0.2500 < 0.5"
    ]
    assert (
        thresholds_for(parse_gate(sections["gate"]), "smoke").failures(
            {"json_valid_rate": 1.0, "catalog_valid_rate": 0.0, "exact_match": 0.0}
        )
        == []
    )
    with pytest.raises(ValueError, match="unknown keys"):
        parse_eval({"batchsize": 3}).for_profile("default")


def test_results_frame_never_renders_a_rejected_plan():
    case = EvalCase("eval:y", "y", (tips([1], "10ul"),), "eval")
    raw = as_json([tips([1], "10ul"), aspirate([20])])  # parses, breaks tip capacity
    frame = results_frame([evaluate_case(case, raw, 0.1, 5, True)], constrained=True)
    assert frame.loc[0, "json_valid"] and not frame.loc[0, "catalog_valid"]
    assert frame["predicted_json"].isna().all()
    assert frame.loc[0, "raw_output"] == raw and "tip_capacity" in frame.loc[0, "error"]


# --- the output gate sees the description ------------------------------------------------------


def test_evaluate_case_rejects_labels_the_description_does_not_contain():
    gold = (aspirate([20], labware="P1"),)
    grounded = evaluate_case(
        EvalCase("eval:g", "draw 20ul from P1 A1", gold, "eval"), as_json(list(gold)), 0.1, 5, True
    )
    assert grounded.checked.catalog_valid and grounded.exact_match
    invented = evaluate_case(
        EvalCase("eval:u", "draw 20ul from Q9 A1", gold, "eval"), as_json(list(gold)), 0.1, 5, True
    )
    assert invented.checked.json_valid and not invented.checked.catalog_valid and not invented.exact_match
    assert "ungrounded_string" in invented.checked.error_message()


# --- slices ----------------------------------------------------------------------------------


def raw_line(input_text: str, output_text: str, case_id: str, **extra) -> str:
    return json.dumps(
        {"conversation": [{"input": input_text, "output": output_text}], "id": case_id, **extra}, ensure_ascii=False
    )


def test_slices_match_the_results_table_contract():
    from data_contracts.tables import REGRESSION_SOURCES

    assert SLICES == REGRESSION_SOURCES == ("eval", "mismatched", "heldout", "public")


def test_read_cases_keeps_raw_text_and_phrasing_family(tmp_path):
    path = tmp_path / "heldout.jsonl"
    path.write_text(
        raw_line("行3:等待2分钟", "Delay(seconds=120)", "h1", phrasing="wait_minutes") + "\n", encoding="utf-8"
    )
    (case,) = read_cases(path, "heldout")
    assert (case.case_id, case.split_source, case.phrasing) == ("heldout:h1", "heldout", "wait_minutes")
    assert case.raw_description == "行3:等待2分钟" and case.description == normalize_text("行3:等待2分钟")
    # The generator lists one family per command; the first one names the record.
    path.write_text(
        raw_line("等待2分钟", "Delay(seconds=120)", "h2", phrasing=["Delay.zh.3", "Shake.zh.1"]) + "\n",
        encoding="utf-8",
    )
    assert read_cases(path, "heldout")[0].phrasing == "Delay.zh.3"


def family_case(case_id: str, phrasing: str | None) -> EvalCase:
    return EvalCase(case_id, case_id, (delay(1),), "heldout", phrasing=phrasing)


def test_cap_takes_cases_in_case_id_order_and_every_family_in_turn():
    plain = [family_case(f"eval:{name}", None) for name in ("d", "a", "c", "b")]
    assert [c.case_id for c in cap_cases(plain, None)] == ["eval:a", "eval:b", "eval:c", "eval:d"]
    assert [c.case_id for c in cap_cases(plain, 2)] == ["eval:a", "eval:b"]
    assert [c.case_id for c in cap_cases(list(reversed(plain)), 2)] == [
        "eval:a",
        "eval:b",
    ]  # input order does not matter
    assert cap_cases(plain, 0) == []
    # Family x holds the three lowest ids; a cap of 3 still takes one case of each family.
    families = [
        family_case("h:1", "x"),
        family_case("h:2", "x"),
        family_case("h:3", "x"),
        family_case("h:4", "y"),
        family_case("h:5", "z"),
    ]
    assert [c.case_id for c in cap_cases(families, 3)] == ["h:1", "h:4", "h:5"]
    assert [c.case_id for c in cap_cases(families, 4)] == ["h:1", "h:2", "h:4", "h:5"]


def test_evaluation_slices_report_missing_files_dedupe_failures_and_cap(tmp_path):
    eval_cases = [
        EvalCase(f"eval:{i}", normalize_text(f"等待{i}秒"), (delay(i),), "eval", str(i)) for i in range(1, 6)
    ]
    mismatched = tmp_path / "mismatched.jsonl"
    mismatched.write_text(
        raw_line("等待1秒", "Delay(seconds=1)", "dup") + "\n" + raw_line("等待9秒", "Delay(seconds=9)", "old") + "\n",
        encoding="utf-8",
    )
    public = tmp_path / "public.jsonl"
    public.write_text(
        "".join(raw_line(f"等待{i}0秒", f"Delay(seconds={i}0)", f"E00{i}", tags=["zh"]) + "\n" for i in range(1, 4)),
        encoding="utf-8",
    )

    slices = evaluation_slices(
        eval_cases, mismatched, tmp_path / "no_heldout.jsonl", public, {"eval": 2, "public": None}
    )
    by_name = {s.name: s for s in slices}
    assert [s.name for s in slices] == list(SLICES)
    assert (by_name["eval"].evaluated, by_name["eval"].available) == (2, 5)
    assert [c.case_id for c in by_name["eval"].cases] == ["eval:1", "eval:2"]
    # "dup" repeats eval:1, so only "old" is a mismatched case
    assert [c.case_id for c in by_name["mismatched"].cases] == ["mismatched:old"] and by_name[
        "mismatched"
    ].available == 1
    heldout = by_name["heldout"]
    assert heldout.missing and (heldout.evaluated, heldout.available) == (0, 0)
    assert heldout.path == str(tmp_path / "no_heldout.jsonl")
    assert not by_name["public"].missing
    assert [c.case_id for c in by_name["public"].cases] == ["public:E001", "public:E002", "public:E003"]
    assert by_name["eval"].path is None and not by_name["eval"].missing


def test_rates_by_slice_on_fixture():
    results = make_results()  # eval slice: 4 cases, 3 valid plans, 1 exact match
    public_case = EvalCase("public:E1", "wait", (delay(60),), "public")
    results.append(evaluate_case(public_case, as_json([delay(60)]), 0.1, 3, True))
    by_slice = rates_by_slice(results)
    assert list(by_slice) == ["eval", "public"]
    assert (by_slice["eval"].cases, by_slice["eval"].json_valid_rate, by_slice["eval"].exact_match) == (4, 0.75, 0.25)
    assert (by_slice["public"].cases, by_slice["public"].catalog_valid_rate, by_slice["public"].exact_match) == (
        1,
        1.0,
        1.0,
    )


def test_only_eval_split_failures_are_appended(tmp_path):
    path = tmp_path / "mismatched_cases.jsonl"
    cases = [EvalCase(f"{source}:x", f"{source} text", (delay(5),), source, f"{source}-x") for source in SLICES]
    results = [evaluate_case(case, as_json([delay(1)]), 0.1, 3, True) for case in cases]
    assert not any(r.exact_match for r in results)
    assert append_failures(path, results) == 1
    assert [json.loads(line)["id"] for line in path.read_text(encoding="utf-8").splitlines()] == ["eval-x"]
    assert append_failures(path, [r for r in results if r.case.split_source != "eval"]) == 0


def test_appended_failure_keeps_the_text_as_written_and_reads_back_as_the_same_case(tmp_path):
    path = tmp_path / "mismatched_cases.jsonl"
    raw = "行2:等待3分钟"
    case = EvalCase("eval:w", normalize_text(raw), (delay(180),), "eval", "w", raw_description=raw)
    assert append_failures(path, [evaluate_case(case, as_json([delay(1)]), 0.1, 3, True)]) == 1
    assert json.loads(path.read_text(encoding="utf-8"))["conversation"][0]["input"] == raw
    (back,) = read_mismatched_cases(path)
    assert (back.description, back.gold) == (case.description, case.gold)
    assert regression_set([case], [back]) == [case]  # recognised as the same case


def test_results_frame_accepts_every_slice():
    from data_contracts.tables import RegressionResultTable

    cases = [EvalCase(f"{source}:x", "wait", (delay(5),), source) for source in SLICES]
    frame = results_frame([evaluate_case(case, as_json([delay(5)]), 0.1, 3, True) for case in cases], constrained=True)
    RegressionResultTable.validate(frame, lazy=True)
    assert frame["split_source"].tolist() == list(SLICES)


def test_max_cases_per_slice_merges_and_is_checked():
    sections = {"eval": {"max_cases": {"eval": 10, "public": 20}, "profiles": {"smoke": {"max_cases": {"eval": 2}}}}}
    assert parse_eval(sections["eval"]).for_profile("smoke").max_cases == {"eval": 2, "public": 20}
    assert parse_eval(sections["eval"]).for_profile("default").max_cases == {"eval": 10, "public": 20}
    with pytest.raises(ValueError, match="unknown slices \\['train'\\]"):
        parse_eval({"max_cases": {"train": 3}}).for_profile("default")
    with pytest.raises(ValueError, match="must map slice names"):
        parse_eval({"max_cases": 16}).for_profile("default")
    with pytest.raises(ValueError, match="eval.max_cases.heldout"):
        parse_eval({"max_cases": {"heldout": -1}}).for_profile("default")


def test_default_profile_evaluation_is_bounded():
    """The default (CPU) profile caps every slice so the run stays within the ~12-minute evaluation budget."""
    from pipelines.config import load_params
    from tests.helpers import PARAMS_PATH

    params = load_params(PARAMS_PATH)
    default = params.eval.for_profile("default")
    assert default.compare_unconstrained is False  # free generation would double the decoding time
    caps = default.max_cases or {}
    assert set(caps) == set(SLICES) and all(isinstance(cap, int) for cap in caps.values())
    # The bundled corpus's eval split whole (the stratified split may round a few cases up), all public examples.
    expected_eval = params.corpus.n_records * params.augment.eval_fraction
    assert caps["eval"] >= 1.05 * expected_eval and caps["public"] >= 20
    assert sum(caps.values()) <= 290  # ~12 minutes at the CPU decoding rate the budget was sized with
    assert params.eval.for_profile("gpu").compare_unconstrained is True  # still configurable per profile


def test_progress_reporter_says_cases_done_of_total_and_eta() -> None:
    from pipelines.serve.evaluate import progress_reporter

    ticks = iter([100.0, 110.0, 130.0])  # start, then after each batch
    lines: list[str] = []
    report = progress_reporter("constrained decoding", lines.append, clock=lambda: next(ticks))
    report(8, 32)
    report(32, 32)
    assert lines == [
        "evaluation progress: 8/32 cases (25%), constrained decoding, elapsed 0:00:10, eta 0:00:30",
        "evaluation progress: 32/32 cases (100%), constrained decoding, elapsed 0:00:30, eta 0:00:00",
    ]
