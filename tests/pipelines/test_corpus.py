"""The bundled seed corpus: size, language mix, long tail, phrasing variety, validity, determinism."""

from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
import sys
import unicodedata
from collections import Counter, defaultdict
from decimal import Decimal
from pathlib import Path

import pytest
import yaml

from data_contracts.catalog import load_catalog
from data_contracts.forms import parse_text_commands, render_text_commands
from data_contracts.validation import validate_commands
from pipelines.cli import main as cli_main
from pipelines.corpus_generator import (
    RARE_COMMANDS,
    STEP_PREFIX,
    GeneratedRecord,
    generate_corpus,
    generate_records,
    write_corpus,
)
from pipelines.config import load_params
from pipelines.normalize import normalize_text

REPO_ROOT = Path(__file__).resolve().parents[2]
CJK = re.compile(r"[\u4e00-\u9fff]")
WELL_TOKEN = re.compile(r"(?<![A-Za-z_0-9])[A-H]\d+")
FREQUENT = ("GetDiti", "Aspirate", "Dispense", "DropDiti")


@pytest.fixture(scope="module")
def settings():
    return load_params(REPO_ROOT / "params.yaml").corpus


@pytest.fixture(scope="module")
def records(settings) -> list[GeneratedRecord]:
    return generate_records(settings.n_records, settings.seed)


@pytest.fixture(scope="module")
def raw_records(settings) -> list[dict]:
    return generate_corpus(settings.n_records, settings.seed)


def records_per_command(records: list[GeneratedRecord]) -> Counter:
    return Counter(name for r in records for name in {c.func_name for c in r.commands})


def test_size_and_language_mix(records):
    assert len(records) >= 400
    languages = Counter(r.lang for r in records)
    assert set(languages) == {"zh", "en"}
    assert languages["zh"] / len(records) >= 0.60
    for record in records:
        # The language label must match what a reader sees: Chinese text has CJK, English has none.
        assert bool(CJK.search(record.text)) == (record.lang == "zh"), record.text


def test_every_catalog_command_appears_with_a_long_tail(records):
    counts = records_per_command(records)
    assert set(counts) == set(load_catalog().commands)
    for name in RARE_COMMANDS:
        share = counts[name] / len(records)
        assert 0.02 <= share <= 0.05, f"{name} is in {share:.1%} of records"
    least_frequent = min(counts[name] for name in FREQUENT)
    for name in ("Mix", "Transfer"):
        assert max(counts[r] for r in RARE_COMMANDS) < counts[name] < least_frequent


def test_records_hold_one_to_six_commands_single_and_multi(records):
    lengths = Counter(len(r.commands) for r in records)
    assert min(lengths) == 1 and max(lengths) == 6
    assert set(lengths) == set(range(1, 7))
    assert lengths[1] >= 0.1 * len(records)


def test_each_command_is_written_with_many_phrasings(records):
    templates = defaultdict(set)
    for record in records:
        for template_id in record.templates:
            name, lang, _kind, _index = template_id.split(".")
            templates[(name, lang)].add(template_id)
    for name in load_catalog().commands:
        for lang in ("zh", "en"):
            assert len(templates[(name, lang)]) >= 5, f"{name}/{lang}: {sorted(templates[(name, lang)])}"


def test_texts_use_every_spelling_the_catalog_rules_mention(records):
    corpus_text = "\n".join(r.text for r in records)
    spellings = [
        # units
        "ul", "uL", "µl", "μL", "µL", "微升", "ml", "mL", "毫升",
        # ranges, distribution, channels
        "到", "至", "各", "每孔", " each", "per well", "respectively", "8通道", "前", "号通道", "通道1-",
        "the first", "channels 1-", "8 channels",
        # times, numbered lines, punctuation widths
        "秒", "分钟", "小时", " min", "行", "步骤", "Line ", "Step ", "，", ", ", "：",
    ]
    missing = [s for s in spellings if s not in corpus_text]
    assert not missing


def test_later_steps_inherit_channels_without_restating_them(records):
    inherited = [r for r in records if any(".inh." in t for t in r.templates)]
    assert len(inherited) >= 0.1 * len(records)
    drop_inherited = [r for r in inherited if any(t.startswith("DropDiti.") and ".inh." in t for t in r.templates)]
    assert drop_inherited
    for record in inherited:
        for position, template_id in enumerate(record.templates):
            if ".inh." in template_id:
                assert position > 0
                assert record.commands[position].func_parameters["channels"] == (
                    record.commands[position - 1].func_parameters["channels"]
                )


def test_every_record_parses_validates_and_matches_its_text(raw_records, records):
    for raw, record in zip(raw_records, records, strict=True):
        assert set(raw) == {"conversation"}
        (turn,) = raw["conversation"]
        assert set(turn) == {"input", "output"}
        assert turn["input"] == record.text and turn["input"].strip()
        commands = parse_text_commands(turn["output"])
        assert commands == list(record.commands)
        assert render_text_commands(commands) == turn["output"]
        assert validate_commands(commands) == [], turn
        assert 1 <= len(commands) <= 6
        # Names that must be copied verbatim from the text really are in the text.
        for command in commands:
            for key in ("labware", "srcLabware", "dstLabware", "program", "position", "liquidClass"):
                if key in command.func_parameters:
                    assert command.func_parameters[key] in turn["input"], (key, turn)


def test_normalization_removes_the_step_prefix_and_nothing_else(records):
    # Texts like "第7号通道..." or "1、3、5号通道..." start with numbers that are content, not step markers.
    for record in records:
        body = STEP_PREFIX.sub("", record.text)
        assert normalize_text(record.text) == " ".join(unicodedata.normalize("NFKC", body).split()), record.text


def test_every_well_named_in_the_text_is_a_well_of_the_record(records):
    # Catches a well glued to a volume ("H4" + "6 μl" -> "H46 μl") or a text that drifted from its commands.
    for record in records:
        wells = {
            well
            for command in record.commands
            for key in ("wells", "srcWells", "dstWells")
            for well in command.func_parameters.get(key, [])
        }
        for token in WELL_TOKEN.findall(record.text):
            assert token in wells, (token, record.text)


def _spellings(microlitres: float) -> set[str]:
    value = Decimal(str(microlitres))
    return {format(value.normalize(), "f"), format((value / 1000).normalize(), "f")}


def test_every_number_of_the_commands_is_written_in_the_text(records):
    for record in records:
        numbers = set(re.findall(r"\d+(?:\.\d+)?", record.text))
        for command in record.commands:
            params = command.func_parameters
            for volume in params.get("vols", []):
                assert _spellings(volume) & numbers, (volume, record.text)
            if "seconds" in params:
                seconds = Decimal(params["seconds"])
                written = {format((seconds / unit).normalize(), "f") for unit in (1, 60, 3600)}
                half_hour = seconds == 1800 and ("半小时" in record.text or "half an hour" in record.text)
                assert half_hour or written & numbers, (params["seconds"], record.text)
            for key in ("temperature", "rpm", "times"):
                if key in params:
                    assert format(Decimal(str(params[key])).normalize(), "f") in numbers, (key, record.text)


def test_inputs_are_unique(raw_records):
    inputs = [r["conversation"][0]["input"] for r in raw_records]
    assert len(set(inputs)) == len(inputs)


def test_generation_is_deterministic(settings, raw_records):
    assert generate_corpus(settings.n_records, settings.seed) == raw_records
    assert generate_corpus(settings.n_records, settings.seed + 1) != raw_records


def test_separate_processes_write_byte_identical_files(tmp_path):
    # Set iteration order changes with PYTHONHASHSEED; the corpus must not depend on it.
    outputs = []
    for hash_seed in ("1", "2"):
        output = tmp_path / f"corpus_{hash_seed}.jsonl"
        env = {**os.environ, "PYTHONHASHSEED": hash_seed}
        command = [sys.executable, "-m", "pipelines", "generate-corpus", "--output", str(output), "--n-records", "60"]
        subprocess.run(command, cwd=REPO_ROOT, env=env, check=True, capture_output=True)
        outputs.append(output.read_bytes())
    assert outputs[0] == outputs[1]
    assert len(outputs[0].splitlines()) == 60


def test_write_corpus_returns_the_file_hash_and_leaves_an_identical_file_alone(tmp_path):
    path = tmp_path / "raw" / "corpus.jsonl"
    records = generate_corpus(30, 5)
    digest = write_corpus(records, path)
    content = path.read_bytes()
    assert digest == hashlib.sha256(content).hexdigest()
    assert content.endswith(b"\n") and b"\r" not in content
    assert [json.loads(line) for line in content.decode("utf-8").splitlines()] == records
    assert "行" in content.decode("utf-8") or "步骤" in content.decode("utf-8")  # written unescaped
    os.utime(path, ns=(1_000_000_000, 1_000_000_000))
    assert write_corpus(records, path) == digest
    assert path.stat().st_mtime_ns == 1_000_000_000
    assert sorted(p.name for p in path.parent.iterdir()) == ["corpus.jsonl"]


def test_cli_writes_byte_identical_output_and_protects_a_different_file(tmp_path, capsys):
    params = tmp_path / "params.yaml"
    output = tmp_path / "data" / "training_data.jsonl"
    sections = yaml.safe_load((REPO_ROOT / "params.yaml").read_text(encoding="utf-8"))
    sections["corpus"] = {"seed": 11, "n_records": 40, "output": str(output)}
    params.write_text(yaml.safe_dump(sections, allow_unicode=True), encoding="utf-8")
    argv = ["generate-corpus", "--params", str(params)]
    assert cli_main(argv) == 0
    first = output.read_bytes()
    assert len(first.splitlines()) == 40
    assert cli_main(argv) == 0
    assert output.read_bytes() == first
    assert "unchanged" in capsys.readouterr().out

    assert cli_main([*argv, "--n-records", "41"]) == 1
    assert "--force" in capsys.readouterr().err
    assert output.read_bytes() == first
    assert cli_main([*argv, "--n-records", "41", "--force"]) == 0
    assert len(output.read_bytes().splitlines()) == 41

    other = tmp_path / "other.jsonl"
    assert cli_main([*argv, "--output", str(other), "--seed", "12", "--n-records", "40"]) == 0
    assert other.read_bytes() != first


def test_generate_corpus_rejects_an_empty_corpus():
    with pytest.raises(ValueError, match="n_records"):
        generate_corpus(0, 1)
