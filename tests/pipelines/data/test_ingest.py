"""The raw stage on hostile input: every line is a record or a quarantine row with the right reason."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pipelines.data.ingest import BOM, ingest, split_lines
from tests.helpers import raw_record

GOOD_OUTPUT = "GetDiti(ditiType='50ul', channels=[1])\nAspirate(channels=[1], labware='P1', wells=['A1'], vols=[20])"


def line(input_text: str, output_text: str) -> bytes:
    return json.dumps(raw_record(input_text, output_text), ensure_ascii=False).encode("utf-8")


# (bytes of the line, expected reason or None for an accepted record)
BAD_INPUT: list[tuple[bytes, str | None]] = [
    (line("行1:用通道1取50ul吸头，从P1的A1吸取20ul", GOOD_OUTPUT), None),
    (b'{"conversation": [{"input": "truncated", "outp', "invalid_json"),
    (BOM + line("Step 1: channel 1 takes a 50ul tip and draws 20ul from P1 A1", GOOD_OUTPUT), None),
    (line("bad bytes ", GOOD_OUTPUT).replace(b"bad bytes ", b"bad bytes \xff\xfe"), "invalid_utf8"),
    (json.dumps({"conversation": [{"input": 42, "output": GOOD_OUTPUT}]}).encode(), "wrong_shape"),
    (json.dumps({"conversation": {"input": "x", "output": GOOD_OUTPUT}}).encode(), "wrong_shape"),
    (b'["not", "an", "object"]', "wrong_shape"),
    (line("fly the plate away", "FlyAway(channels=[1])"), "catalog_unknown_command"),
    (
        line(
            "10ul tip on channel 1, then draw 50ul from P1 A1",
            "GetDiti(ditiType='10ul', channels=[1])\nAspirate(channels=[1], labware='P1', wells=['A1'], vols=[50])",
        ),
        "catalog_tip_capacity",
    ),
    (
        line("draw 5ul from P1 Z99", "Aspirate(channels=[1], labware='P1', wells=['Z99'], vols=[5])"),
        "catalog_invalid_well",
    ),
    (
        line("channels 1-2 draw 5ul from P1 A1", "Aspirate(channels=[1, 2], labware='P1', wells=['A1'], vols=[5, 5])"),
        "catalog_length_mismatch",
    ),
    (line("do nothing", "   "), "empty_output"),
    (line("  ", GOOD_OUTPUT), "empty_input"),
    (line("get tips", "GetDiti(ditiType="), "unparseable_command"),
    (line("escape", "__import__('os').system('true')"), "unparseable_command"),
    (b"", "blank_line"),
    (b"   \t", "blank_line"),
    (b"[" * 100_000, "invalid_json"),
    (line("行1:用通道1取50ul吸头，从P1的A1吸取20ul", GOOD_OUTPUT), "duplicate"),
    (b'{"conversation": [{"input": "lone \\ud800 surrogate", "output": "Delay(seconds=1)"}]}', "invalid_unicode"),
]


@pytest.fixture()
def bad_input_dir(tmp_path: Path) -> Path:
    raw = tmp_path / "raw"
    raw.mkdir()
    (raw / "bad.jsonl").write_bytes(b"\n".join(data for data, _ in BAD_INPUT) + b"\n")
    return raw


def test_every_bad_line_is_quarantined_with_its_reason(bad_input_dir: Path) -> None:
    result = ingest(bad_input_dir)

    expected_reasons: dict[str, int] = {}
    for _, reason in BAD_INPUT:
        if reason:
            expected_reasons[reason] = expected_reasons.get(reason, 0) + 1
    assert len(expected_reasons) >= 10
    assert result.reasons == dict(sorted(expected_reasons.items()))
    assert result.n_lines == len(BAD_INPUT)
    assert result.n_records == sum(1 for _, reason in BAD_INPUT if reason is None)
    assert result.n_lines == result.n_records + result.n_quarantined

    by_line = {row.line_number: row.reason for row in result.quarantine.itertuples()}
    by_line.update({number: None for number in result.records["line_number"]})
    assert by_line == {number: reason for number, (_, reason) in enumerate(BAD_INPUT, start=1)}


def test_quarantine_rows_explain_the_problem(bad_input_dir: Path) -> None:
    quarantine = ingest(bad_input_dir).quarantine.set_index("line_number")

    capacity = quarantine.loc[9]
    assert capacity.reason == "catalog_tip_capacity"
    assert "command 1 (Aspirate) field vols" in capacity.detail
    assert "10ul" in capacity.detail
    assert "Z99" in quarantine.loc[10].detail
    assert quarantine.loc[19].detail == "exact duplicate of bad.jsonl:1"
    assert "line 1" in quarantine.loc[14].detail
    # Undecodable bytes are kept visibly, not dropped.
    assert "\ufffd" in quarantine.loc[4].raw_line
    assert (quarantine["stage"] == "raw").all()
    assert (quarantine["source_file"] == "bad.jsonl").all()


def test_bom_is_stripped_and_the_line_accepted(bad_input_dir: Path) -> None:
    records = ingest(bad_input_dir).records.set_index("line_number")
    assert records.loc[3].input_text.startswith("Step 1:")
    assert not records.loc[3].raw_line.startswith("\ufeff")


def test_a_line_over_the_limit_is_not_parsed(tmp_path: Path) -> None:
    raw = tmp_path / "raw"
    raw.mkdir()
    long_line = line("x" * 500, GOOD_OUTPUT)
    (raw / "a.jsonl").write_bytes(long_line + b"\n" + line("short", GOOD_OUTPUT) + b"\n")

    result = ingest(raw, max_line_bytes=400)

    assert result.reasons == {"line_too_long": 1}
    assert result.n_records == 1
    stored = result.quarantine.iloc[0]
    assert f"{len(long_line)} bytes" in stored.detail
    assert len(stored.raw_line) == 400


def test_files_are_read_in_sorted_order_with_hashes_and_crlf(tmp_path: Path) -> None:
    raw = tmp_path / "raw"
    raw.mkdir()
    (raw / "b.jsonl").write_bytes(line("second file", GOOD_OUTPUT) + b"\r\n")
    (raw / "a.jsonl").write_bytes(line("first file", GOOD_OUTPUT) + b"\r\n" + line("first file 2", GOOD_OUTPUT))
    (raw / "empty.jsonl").write_bytes(b"")
    (raw / "notes.txt").write_bytes(b"not jsonl")

    result = ingest(raw)

    assert result.records["source_file"].tolist() == ["a.jsonl", "a.jsonl", "b.jsonl"]
    assert result.records["input_text"].tolist() == ["first file", "first file 2", "second file"]
    assert result.lines_per_file == {"a.jsonl": 2, "b.jsonl": 1, "empty.jsonl": 0}
    assert set(result.file_sha256) == {"a.jsonl", "b.jsonl", "empty.jsonl"}
    assert result.quarantine.empty


def test_duplicates_are_detected_across_files(tmp_path: Path) -> None:
    raw = tmp_path / "raw"
    raw.mkdir()
    (raw / "a.jsonl").write_bytes(line("same", GOOD_OUTPUT) + b"\n")
    (raw / "b.jsonl").write_bytes(line("same", GOOD_OUTPUT) + b"\n")

    result = ingest(raw)

    assert result.reasons == {"duplicate": 1}
    assert result.quarantine.iloc[0].source_file == "b.jsonl"
    assert result.quarantine.iloc[0].detail == "exact duplicate of a.jsonl:1"


def test_split_lines_does_not_invent_a_last_line() -> None:
    assert split_lines(b"a\nb\n") == [b"a", b"b"]
    assert split_lines(b"a\n\nb") == [b"a", b"", b"b"]
    assert split_lines(b"") == []


def test_missing_raw_dir_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="does not exist"):
        ingest(tmp_path / "nowhere")


def test_parsing_in_worker_processes_gives_the_same_result(
    bad_input_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import pipelines.data.ingest as ingest_module

    sequential = ingest(bad_input_dir, workers=1)
    monkeypatch.setattr(ingest_module, "PARALLEL_MIN_LINES", 1)
    monkeypatch.setattr(ingest_module, "_CHUNK_LINES", 3)
    parallel = ingest(bad_input_dir, workers=2)

    assert parallel.reasons == sequential.reasons
    assert parallel.records.equals(sequential.records)
    assert parallel.quarantine.equals(sequential.quarantine)
