"""The bundled seed corpus: size, language mix, shares, surface forms, phrasing families, validity, determinism."""

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
from data_contracts.commands import Command
from data_contracts.forms import parse_text_commands, render_text_commands
from data_contracts.validation import validate_commands
from pipelines.cli import main as cli_main
from pipelines.config import load_params, parse_params
from pipelines.corpus import generator as corpus_generator
from pipelines.corpus.families import held_out_families, template_families
from pipelines.corpus.generator import (
    GeneratedRecord,
    generate_corpus,
    generate_heldout_records,
    generate_records,
    heldout_cases,
    write_corpus,
)
from pipelines.corpus.near_copy import read_protected_texts
from pipelines.corpus.phrasings import STEP_PREFIX
from pipelines.corpus.planning import RARE_COMMANDS
from pipelines.data.normalize import split_line_prefix
from pipelines.serve.eval_slices import read_cases

REPO_ROOT = Path(__file__).resolve().parents[3]
CJK = re.compile(r"[\u4e00-\u9fff]")
WELL_TOKEN = re.compile(r"(?<![A-Za-z_0-9])[A-H]\d+")
FREQUENT = ("GetDiti", "Aspirate", "Dispense", "DropDiti")
PIPETTING = frozenset({"GetDiti", "DropDiti", "Aspirate", "Dispense", "Mix", "Transfer"})


@pytest.fixture(scope="module")
def settings():
    return load_params(REPO_ROOT / "params.yaml").corpus


@pytest.fixture(scope="module")
def protected(settings) -> list[str]:
    return read_protected_texts(REPO_ROOT / settings.public_examples)


@pytest.fixture(scope="module")
def records(settings, protected) -> list[GeneratedRecord]:
    return generate_records(settings.n_records, settings.seed, protected)


@pytest.fixture(scope="module")
def heldout(settings, protected) -> list[GeneratedRecord]:
    return generate_heldout_records(settings.heldout_records, settings.seed, protected)


@pytest.fixture(scope="module")
def held(settings) -> frozenset[str]:
    return held_out_families(settings.seed)


def records_per_command(records: list[GeneratedRecord]) -> Counter:
    return Counter(name for r in records for name in {c.func_name for c in r.commands})


def fold(text: str) -> str:
    return "".join(unicodedata.normalize("NFKC", text).casefold().split())


# --- size and shares -------------------------------------------------------------------------


def test_size_and_language_mix(settings, records, heldout):
    assert len(records) == settings.n_records == 4000
    assert len(heldout) == settings.heldout_records == 300
    for corpus in (records, heldout):
        languages = Counter(r.lang for r in corpus)
        assert set(languages) == {"zh", "en"}
        assert languages["zh"] / len(corpus) >= 0.60
        for record in corpus:
            # The language label must match what a reader sees: Chinese text has CJK, English has none.
            assert bool(CJK.search(record.text)) == (record.lang == "zh"), record.text


def test_rare_commands_reach_their_share_and_the_tail_stays_long(records):
    counts = records_per_command(records)
    assert set(counts) == set(load_catalog().commands)
    for name in RARE_COMMANDS:
        share = counts[name] / len(records)
        assert 0.07 <= share <= 0.09, f"{name} is in {share:.1%} of records"
    least_frequent = min(counts[name] for name in FREQUENT)
    for name in ("Mix", "Transfer"):
        assert max(counts[r] for r in RARE_COMMANDS) < counts[name] < least_frequent


def test_a_quarter_of_records_hold_one_command_spread_over_all_commands(records):
    singles = Counter(r.commands[0].func_name for r in records if len(r.commands) == 1)
    n_single = sum(singles.values())
    assert 0.23 <= n_single / len(records) <= 0.27
    assert set(singles) == set(load_catalog().commands)
    fair_share = n_single / len(singles)
    for name, count in singles.items():
        assert 0.8 * fair_share <= count <= 1.2 * fair_share, (name, count)
        languages = {r.lang for r in records if len(r.commands) == 1 and r.commands[0].func_name == name}
        assert languages == {"zh", "en"}, name


def test_rare_commands_also_come_with_pipetting_and_with_each_other(records):
    for name in RARE_COMMANDS:
        names_in = [{c.func_name for c in r.commands} for r in records if any(c.func_name == name for c in r.commands)]
        assert sum(bool(names & PIPETTING) for names in names_in) >= 0.3 * len(names_in), name
        assert any(len(names - PIPETTING) >= 2 for names in names_in), name


def test_records_hold_one_to_six_commands_single_and_multi(records):
    lengths = Counter(len(r.commands) for r in records)
    assert set(lengths) == set(range(1, 7))


# --- phrasing families -----------------------------------------------------------------------


def test_each_command_is_written_with_many_phrasings(records):
    templates = defaultdict(set)
    for record in records:
        for template_id in record.templates:
            name, lang, _kind, _index = template_id.split(".")
            templates[(name, lang)].add(template_id)
    for name in load_catalog().commands:
        for lang in ("zh", "en"):
            assert len(templates[(name, lang)]) >= 5, f"{name}/{lang}: {sorted(templates[(name, lang)])}"


def _template_pattern(template: str) -> re.Pattern[str]:
    """The template's literal text, in order, with anything between: what any text it wrote contains."""
    literals = [fold(piece) for piece in re.split(r"\{[a-z]+\}", template)]
    return re.compile(".*?".join(re.escape(piece) for piece in literals if piece), re.DOTALL)


def test_every_record_carries_the_phrasing_families_that_wrote_it(records, heldout):
    families = template_families()
    for record in [*records, *heldout]:
        assert record.to_raw()["phrasing"] == list(record.templates)
        assert len(record.templates) == len(record.commands)
        text = fold(record.text)
        for family, command in zip(record.templates, record.commands, strict=True):
            assert family.split(".")[:2] == [command.func_name, record.lang], (family, record.text)
            assert _template_pattern(families[family]).search(text), (family, families[family], record.text)


def test_about_a_tenth_of_the_families_are_held_out_in_every_large_group(settings, held):
    families = template_families()
    assert held <= set(families)
    assert 0.08 <= len(held) / len(families) <= 0.14
    groups: dict[tuple[str, str, str], set[str]] = defaultdict(set)
    for family in families:
        groups[tuple(family.split(".")[:3])].add(family)
    for group, members in groups.items():
        if len(members) >= 4:
            assert members & held, group
            assert members - held, group  # something is left to train on
    for name in load_catalog().commands:
        for lang in ("zh", "en"):
            assert any(f.startswith(f"{name}.{lang}.") for f in held), (name, lang)
    assert held_out_families(settings.seed) == held
    assert held_out_families(settings.seed + 1) != held


def test_training_never_uses_a_held_out_family_and_the_held_out_cases_use_only_them(records, heldout, held):
    assert not {family for r in records for family in r.templates} & held
    used = {family for r in heldout for family in r.templates}
    assert used <= held
    assert len(used) >= 0.9 * len(held)
    assert {c.func_name for r in heldout for c in r.commands} == set(load_catalog().commands)
    assert not {r.text for r in heldout} & {r.text for r in records}


# --- surface forms ---------------------------------------------------------------------------

# Every form the catalog's reading rules cover, as people write it; each must occur at least once.
SURFACE_FORMS: dict[str, dict[str, str]] = {
    "well ranges": {
        "A1-D1": r"[A-H]\d+-[A-H]\d+", "A1到D1": r"[A-H]\d+到[A-H]\d+", "A1~D1": r"[A-H]\d+~[A-H]\d+",
        "A1 to D1": r"[A-H]\d+ to [A-H]\d+", "A1 through D1": r"[A-H]\d+ through [A-H]\d+",
        "A1–D1": r"[A-H]\d+–[A-H]\d+", "A1至D1": r"[A-H]\d+至[A-H]\d+",
    },
    "per-well volume": {
        "each": r"\d ?[uµμ][lL] each", "各": r"各\d", "每孔": r"每孔\d", "每通道": r"每通道\d",
        "per well": r"[lL] per well", "per channel": r"[lL] per channel",
    },
    "per-channel volume lists": {
        "respectively": r"\d+(?:\.\d+)? ?[uµμ][lL] and \d+(?:\.\d+)? ?[uµμ][lL] respectively",
        "分别": r"分别(?:吸取)?\d+(?:\.\d+)?、\d+(?:\.\d+)?(?:、\d+(?:\.\d+)?)*\s?(?:微升|[uµμ][lL])",
    },
    "volume units": {
        "0.6 mL": r"(?<![\d.])0\.\d+ ?m[lL]", "1.5毫升-style": r"\d(?:\.\d+)?毫升", "µl": "µl", "μL": "μL",
        "uL": r"\duL", "微升": "微升",
    },
    "durations": {
        "1分20秒": r"\d+分\d+秒", "1.5 h": r"\d\.5 h\b", "75 min": r"\b(?:[6-9]\d|1\d\d) min\b", "半小时": "半小时",
        "40 s": r"\b\d+ s\b", "3小时": r"\d小时", "45 minutes": r"\d+ minutes", "1小时15分钟": r"\d小时\d+分钟",
        "五分钟": r"[一两三四五六七十]+(?:个)?(?:小时|分钟)",
    },
    "temperatures": {"55 °C": r"\d °C", "55℃": r"\d℃", "55度": r"\d度"},
    "shaking speeds": {"750 rpm": r"\d rpm", "750转/分": r"\d转/分", "750转每分钟": r"\d转每分钟"},
    "channels": {
        "前4个通道": r"前\d个通道", "前四个通道": r"前[两三四五六七]个通道", "every channel": "every channel",
        "all channels": "all channels", "8通道": "8通道", "channels 3 and 6": r"channels \d and \d",
        "通道3与通道5": r"通道\d与通道\d", "1-4号通道": r"\d-\d号通道",
        "the first four channels": r"the first [a-z]+ channels",
    },
    "arrows": {"→": "→", "->": "->"},
    "quotes": {"“”": "“", "「」": "「", '""': '"', "''": "'"},
    "connectives": {"然后": "然后", "之后": "之后", "再": "，再", "then": " then ", ";": "; "},
    "liquid class": {"liquid class": "liquid class", "液体类": "液体类"},
}
LEADING_FORMS = {
    "行N:": r"行\d+[:：]", "Step N:": r"Step \d+:", "步骤N：": r"步骤\d+：", "N.": r"\d+\. ", "Line N:": r"Line \d+:",
    "第N步": r"第\d+步", "(N)": r"[(（]\d+[)）]", "Prep:": r".*Prep: ", "加样（通道1-4）：": r".*加样（通道",
    "Pipetting (channels 1-4):": r".*\((?:channels|ch) [^)]*\): ",
}


def test_texts_use_every_surface_form_of_the_reading_rules(records):
    corpus_text = "\n".join(r.text for r in records)
    missing = [
        f"{family}: {form}"
        for family, forms in SURFACE_FORMS.items()
        for form, pattern in forms.items()
        if not re.search(pattern, corpus_text)
    ]
    missing += [form for form, pattern in LEADING_FORMS.items() if not any(re.match(pattern, r.text) for r in records)]
    assert not missing


def test_punctuation_comes_full_and_half_width_and_steps_one_per_line(records):
    chinese = [r.text for r in records if r.lang == "zh"]
    assert any("，" in text for text in chinese) and any(", " in text for text in chinese)
    assert any("：" in text for text in chinese) and any(re.search(r"[\u4e00-\u9fff]:", text) for text in chinese)
    numbered = [r for r in records if "\n" in r.text]
    assert len(numbered) >= 0.02 * len(records)
    for record in numbered:
        assert len(record.text.splitlines()) == len(record.commands), record.text


def test_later_steps_inherit_channels_without_restating_them(records):
    inherited = [r for r in records if any(".inh." in t for t in r.templates)]
    assert len(inherited) >= 0.1 * len(records)
    drop_inherited = [r for r in inherited if any(t.startswith("DropDiti.") and ".inh." in t for t in r.templates)]
    assert drop_inherited
    headed = [r for r in records if r.channel_header]
    assert headed
    for record in inherited:
        for position, template_id in enumerate(record.templates):
            if ".inh." not in template_id:
                continue
            if position == 0:
                # Only a header can give the first step its channels ("加样（通道1-4）：").
                assert record.channel_header, record.text
            else:
                assert record.commands[position].func_parameters["channels"] == (
                    record.commands[position - 1].func_parameters["channels"]
                ), record.text


# --- every record is right -------------------------------------------------------------------


def test_every_record_parses_validates_and_matches_its_text(records, heldout):
    raw_records = [record.to_raw() for record in records]
    for raw, record in zip([*raw_records, *heldout_cases(heldout)], [*records, *heldout], strict=True):
        assert set(raw) in ({"conversation", "phrasing"}, {"conversation", "id", "phrasing"})
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
    # Texts like "第7号通道..." or "3、5号通道..." start with numbers that are content, not step markers.
    for record in records:
        for line in record.text.splitlines():
            folded = " ".join(unicodedata.normalize("NFKC", line).split())
            body = " ".join(unicodedata.normalize("NFKC", STEP_PREFIX.sub("", line)).split())
            assert split_line_prefix(folded)[1].strip() == body, record.text


def test_every_well_named_in_the_text_is_a_well_of_the_record(records):
    # Catches a well glued to a volume ("H4" + "6 μl" -> "H46 μl") or a text that drifted from its commands.
    for record in records:
        wells = {
            well
            for command in record.commands
            for key in ("wells", "srcWells", "dstWells")
            for well in command.func_parameters.get(key, [])
        }
        for token in WELL_TOKEN.findall(unicodedata.normalize("NFKC", record.text)):
            assert token in wells, (token, record.text)


def _spellings(microlitres: float) -> set[str]:
    value = Decimal(str(microlitres))
    return {format(value.normalize(), "f"), format((value / 1000).normalize(), "f")}


ZH_AMOUNTS = {
    "一": 1, "两": 2, "二": 2, "三": 3, "四": 4, "五": 5, "六": 6, "七": 7,
    "十": 10, "十五": 15, "二十": 20, "三十": 30,
}
# "(?![A-Za-z])" rather than \b: Python counts CJK as word characters, and "1.5 h后" is a duration.
DURATION_PART = re.compile(
    r"(\d+(?:\.\d+)?|[一两二三四五六七十]+|半)\s*(个半小时|个小时|小时|分钟|分(?![别配液])|秒钟|秒"
    r"|(?:hours?|hrs?|h|minutes?|mins?|min|seconds?|secs?|s)(?![A-Za-z]))"
)


def _unit_seconds(unit: str) -> int:
    if unit[0] in "个小h":
        return 3600
    return 60 if unit[0] in "分m" else 1


def durations_in(text: str) -> set[Decimal]:
    """Every duration the text states in seconds, compound ones ("1分20秒", "1 h 15 min") summed."""
    found: set[Decimal] = {Decimal(1800)} if "half an hour" in text else set()
    chains: list[Decimal] = []
    chain_end = None
    for match in DURATION_PART.finditer(text):
        amount_text, unit = match.groups()
        amount = Decimal("0.5") if amount_text == "半" else Decimal(ZH_AMOUNTS.get(amount_text, 0) or amount_text)
        if unit == "个半小时":
            amount += Decimal("0.5")
        seconds = amount * _unit_seconds(unit)
        if chains and not text[chain_end : match.start()].strip():
            chains[-1] += seconds  # "1分" then "20秒": one duration
        else:
            chains.append(seconds)
        chain_end = match.end()
    return found | set(chains)


def test_duration_reader_reads_compound_and_worded_durations():
    assert durations_in("等待1分20秒") == {Decimal(80)}
    assert durations_in("1 h 15 min, then 45 s") == {Decimal(4500), Decimal(45)}
    assert durations_in("一个半小时") == {Decimal(5400)}
    assert durations_in("半小时") == {Decimal(1800)}
    assert durations_in("等待1.5 h后，8 channels") == {Decimal(5400)}
    assert durations_in("分别20、30微升，分配到A1") == set()


def test_every_number_of_the_commands_is_written_in_the_text(records, heldout):
    for record in [*records, *heldout]:
        text = unicodedata.normalize("NFKC", record.text)
        numbers = set(re.findall(r"\d+(?:\.\d+)?", text))
        durations = durations_in(text)
        for command in record.commands:
            params = command.func_parameters
            for volume in params.get("vols", []):
                assert _spellings(volume) & numbers, (volume, record.text)
            if "seconds" in params:
                assert Decimal(params["seconds"]) in durations, (params["seconds"], record.text)
            for key in ("temperature", "rpm", "times"):
                if key in params:
                    assert format(Decimal(str(params[key])).normalize(), "f") in numbers, (key, record.text)


def test_inputs_are_unique(records, heldout):
    inputs = [r.text for r in records]
    assert len(set(inputs)) == len(inputs)
    assert len({r.text for r in heldout}) == len(heldout)


# --- determinism and files -------------------------------------------------------------------


def test_generation_is_deterministic(settings, protected, records, heldout):
    assert generate_records(settings.n_records, settings.seed, protected) == records
    assert generate_heldout_records(settings.heldout_records, settings.seed, protected) == heldout
    assert generate_records(settings.n_records, settings.seed + 1, protected) != records
    assert generate_corpus(60, settings.seed) == generate_corpus(60, settings.seed)


def test_separate_processes_write_byte_identical_files(tmp_path):
    # Set iteration order changes with PYTHONHASHSEED; neither file may depend on it.
    outputs = []
    for hash_seed in ("1", "2"):
        corpus, cases = tmp_path / f"corpus_{hash_seed}.jsonl", tmp_path / f"heldout_{hash_seed}.jsonl"
        env = {**os.environ, "PYTHONHASHSEED": hash_seed}
        command = [
            sys.executable, "-m", "pipelines", "generate-corpus", "--output", str(corpus),
            "--heldout-output", str(cases), "--n-records", "60", "--heldout-records", "20",
        ]
        subprocess.run(command, cwd=REPO_ROOT, env=env, check=True, capture_output=True)
        outputs.append((corpus.read_bytes(), cases.read_bytes()))
    assert outputs[0] == outputs[1]
    assert len(outputs[0][0].splitlines()) == 60 and len(outputs[0][1].splitlines()) == 20


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


def _params_file(tmp_path: Path, corpus: dict) -> Path:
    params = tmp_path / "params.yaml"
    sections = yaml.safe_load((REPO_ROOT / "params.yaml").read_text(encoding="utf-8"))
    sections["corpus"] = corpus
    params.write_text(yaml.safe_dump(sections, allow_unicode=True), encoding="utf-8")
    return params


def test_cli_writes_byte_identical_output_and_protects_a_different_file(tmp_path, capsys):
    output = tmp_path / "data" / "training_data.jsonl"
    cases = tmp_path / "heldout" / "cases.jsonl"
    corpus = {"seed": 11, "n_records": 40, "output": str(output), "heldout_records": 12, "heldout_output": str(cases)}
    argv = ["generate-corpus", "--params", str(_params_file(tmp_path, corpus))]
    assert cli_main(argv) == 0
    first, first_cases = output.read_bytes(), cases.read_bytes()
    assert len(first.splitlines()) == 40 and len(first_cases.splitlines()) == 12
    assert cli_main(argv) == 0
    assert (output.read_bytes(), cases.read_bytes()) == (first, first_cases)
    assert capsys.readouterr().out.count("unchanged") == 2

    assert cli_main([*argv, "--n-records", "41"]) == 1
    assert "--force" in capsys.readouterr().err
    assert output.read_bytes() == first
    assert cli_main([*argv, "--heldout-records", "13"]) == 1
    assert cases.read_bytes() == first_cases and output.read_bytes() == first
    assert cli_main([*argv, "--n-records", "41", "--force"]) == 0
    assert len(output.read_bytes().splitlines()) == 41
    assert cases.read_bytes() == first_cases  # same seed and size: the held-out cases stay as they were

    other = tmp_path / "other.jsonl"
    assert cli_main([*argv, "--output", str(other), "--seed", "12", "--n-records", "40", "--force"]) == 0
    assert other.read_bytes() != first


def test_the_held_out_file_is_a_set_of_evaluation_cases(tmp_path, settings, monkeypatch):
    monkeypatch.chdir(REPO_ROOT)  # params.yaml names the public examples relative to the repository
    output, cases_path = tmp_path / "training.jsonl", tmp_path / "heldout" / "phrasing_families.jsonl"
    argv = ["generate-corpus", "--output", str(output), "--heldout-output", str(cases_path), "--n-records", "30"]
    assert cli_main(argv) == 0
    lines = [json.loads(line) for line in cases_path.read_text(encoding="utf-8").splitlines()]
    assert [line["id"] for line in lines] == [f"H{n:04d}" for n in range(1, settings.heldout_records + 1)]
    assert all(line["phrasing"] for line in lines)
    cases = read_cases(cases_path, "heldout")
    assert len(cases) == settings.heldout_records
    assert cases[0].case_id == "heldout:H0001"
    golds = [parse_text_commands(line["conversation"][0]["output"]) for line in lines]
    assert [list(case.gold) for case in cases] == golds


def test_corpus_params_name_a_bad_size():
    raw = yaml.safe_load((REPO_ROOT / "params.yaml").read_text(encoding="utf-8"))
    raw["corpus"]["heldout_records"] = 0
    with pytest.raises(ValueError, match="corpus.heldout_records"):
        parse_params(raw)


def test_generate_corpus_rejects_an_empty_corpus():
    with pytest.raises(ValueError, match="n_records"):
        generate_corpus(0, 1)


def test_a_kind_of_record_whose_phrasings_are_used_up_is_an_error_not_a_hang(monkeypatch):
    # Every record planned as the same 30 s wait: a few hundred distinct texts exist, not 3000.
    wait = [Command(func_name="Delay", func_parameters={"seconds": 30})]
    monkeypatch.setattr(corpus_generator, "plan_slot", lambda rng, slot: wait)
    with pytest.raises(ValueError, match="used up"):
        generate_records(3000, 1)
