"""Grounded decoding: labels (labware, program, position, liquidClass) may only copy text from the description.

First the byte-level bookkeeping on the tiny tokenizer's real vocabulary (CJK characters span several
tokens), checked against a brute-force definition; then untrained tiny models, which write invented
labels under the grammar alone, and only the description's text with grounding on; then the gate that
refuses an ungrounded plan in `predict`.
"""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from bench.baseline_decode import generate_one_at_a_time
from data_contracts.commands import Command
from data_contracts.validation import grounded_label_fields
from pipelines.model.plan_layout import render_commands
from pipelines.model.prompts import serving_user_message
from pipelines.serve.constrained import DecodingLimits
from pipelines.serve.decode import DecodingConfig, generate_batched
from pipelines.serve.grounding import GroundedFields, GroundedRow, GroundingVocab, closes_label
from pipelines.serve.plan_output import check_plan
from tests.helpers import predict_args

DESCRIPTIONS = [
    "行1:用通道1-4从样品板A1-D1各吸取20ul，分配到反应板B3-E3，每孔20微升，然后弃去枪头。",
    "摇板：反应板A，500转每分钟，持续2分钟",
    "将细胞板移到3号位，再运行程序 PCR_35",
    "用通道2从储液槽B1吸取100微升水",
    "孵育 37 摄氏度 30 分钟",
    "程序暂停3分钟",
    "Shake Plate1 at 700 rpm for 1 minute, then move it to Deck3.",
    "Transfer 10 ul from Src_Plate A1 to Assay_Plate B2 with channel 1",
    "Run program Touchdown60 on Plate7",
    "Keep Assay_Plate at 42 °C for 45 minutes",
    "Pick up 200ul tips on channel 3",
    "Wait 2 minutes",
]
# Untrained models from these seeds write, between them, every grounded label field under the grammar:
# PCR (labware, program), MoveLabware (position), Dispense (liquidClass), Transfer (srcLabware, dstLabware).
SEEDS = (0, 1, 3, 17)
LIMITS = DecodingLimits(max_commands=3, max_string_chars=12, max_number=1000)
UNGROUNDED = "ungrounded_string"


def label_values(text: str) -> list[tuple[str, str]]:
    """(field, value) of every grounded label in a constrained output."""
    checked = check_plan(text)
    assert checked.json_valid, text
    fields = grounded_label_fields()
    return [(name, value) for c in checked.commands for name, value in c.func_parameters.items() if name in fields]


# --- bookkeeping on bytes, no model -----------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny_vocab(tmp_path_factory) -> tuple[GroundingVocab, object]:
    from pipelines.model.model_io import eoc_token_id, load_model_and_tokenizer
    from pipelines.model.tiny_model import build_tiny_model
    from pipelines.serve.constrained import GrammarCache

    _, tokenizer = load_model_and_tokenizer(build_tiny_model(tmp_path_factory.mktemp("tiny_vocab"), seed=0))
    vocab = GrammarCache().grounding_vocab(tokenizer, len(tokenizer), [eoc_token_id(tokenizer)])
    return vocab, tokenizer


def row_after(vocab: GroundingVocab, description: str, generated: str | bytes, wells: bool = False) -> GroundedRow:
    row = GroundedRow(description.encode(), vocab, GroundedFields.for_catalog(grounded_wells=wells))
    row.accept_bytes(generated.encode() if isinstance(generated, str) else generated)
    return row


def brute_force_continuations(
    vocab: GroundingVocab, partial: bytes, description: bytes, excluded: set[int]
) -> set[int]:
    """Every token that keeps `partial` grounded, by definition: extends it to a substring, or closes it non-empty."""
    allowed = set()
    for token_id, token in enumerate(vocab.token_bytes):
        if not token or token_id in excluded:
            continue
        head, quote, _ = token.partition(b'"')
        value = partial + head
        if value in description and (not quote or closes_label(description, value)):
            allowed.add(token_id)
    return allowed


# Byte strings: a partial value can end inside a CJK character (3 UTF-8 bytes, often several tokens).
PARTIALS = [b"", "样".encode(), "样".encode()[:2], "样品".encode(), "反应板".encode(), b"Pl", b"Plate", b"1"]


@pytest.mark.parametrize("partial", PARTIALS, ids=[p.decode(errors="replace") or "empty" for p in PARTIALS])
def test_continuations_are_exactly_the_tokens_that_keep_a_value_grounded(tiny_vocab, partial):
    vocab, tokenizer = tiny_vocab
    description = "行1:用通道1-4从样品板A1-D1各吸取20ul，分配到反应板B3-E3。Shake Plate1 at 700 rpm"
    opened = b'{"commands":[{"func_name":"PCR","func_parameters":{"labware":"'
    row = row_after(vocab, description, opened + partial)
    assert row.partial == partial
    expected = brute_force_continuations(vocab, partial, description.encode(), set(tokenizer.all_special_ids))
    assert set(row.continuations().tolist()) == expected
    assert expected  # the description really offers continuations


@pytest.mark.parametrize(
    ("description", "value", "complete"),
    [
        ("摇板：反应板A，700转每分钟", "反应板", False),  # the name goes on: 反应板A
        ("摇板：反应板A，700转每分钟", "反应板A", True),
        ("从样品板A1-D1各吸取20ul", "样品板", True),  # a well name follows the label directly
        ("Shake Plate_B2 at 700 rpm", "Plate_B", False),
        ("Shake Plate_B2 at 700 rpm", "Plate_B2", True),
        ("Move to Deck_4", "Deck", False),
        ("热循环仪对扩增板C执行程序", "扩增板", False),
        ("热循环仪对扩增板C执行程序", "扩增", True),  # Chinese runs words together: no boundary to check
        ("细胞板37°C温育1200s", "细胞板", True),  # a number after a Chinese name
        ("Plate1 and Plate12", "Plate1", True),  # one occurrence that ends is enough
        ("Plate12", "Plate1", False),
        ("Plate1", "", False),
    ],
)
def test_a_label_closes_only_where_a_name_may_end(description, value, complete):
    assert closes_label(description.encode(), value.encode()) is complete


def test_a_truncated_ascii_name_cannot_close(tiny_vocab):
    vocab, _ = tiny_vocab
    shake = '{"commands":[{"func_name":"Shake","func_parameters":{"labware":'
    row = row_after(vocab, "摇板：反应板A，700转", shake + '"反应板')
    assert not row.token_keeps_grounding(b'",')
    assert row.token_keeps_grounding(b'A",')
    opening = row_after(vocab, "摇板：反应板A，700转", shake)
    assert not opening.token_keeps_grounding('"反应板",'.encode())  # opened and closed by one token
    assert opening.token_keeps_grounding('"反应板A",'.encode())


def test_a_label_opens_after_its_key_and_closes_at_its_quote(tiny_vocab):
    vocab, _ = tiny_vocab
    row = row_after(vocab, "Plate1", '{"commands":[{"func_name":"PCR","func_parameters":{"labware":"Pla')
    assert row.partial == b"Pla"
    row.accept_bytes(b'te1","program":"')
    assert row.partial == b""  # the program value is open now, empty
    row.accept_bytes(b'P",')
    assert row.partial is None
    row = row_after(vocab, "Plate1", '{"commands":[{"func_name":"Delay","func_parameters":{"seconds":5,"x":"')
    assert row.partial is None  # not a grounded field


def test_a_token_that_opens_a_value_is_checked_for_the_bytes_it_carries(tiny_vocab):
    vocab, _ = tiny_vocab
    row = row_after(vocab, "Plate1 样品板", '{"commands":[{"func_name":"PCR","func_parameters":{"labware":')
    assert row.partial is None
    assert row.token_keeps_grounding(b'"Pla')
    assert row.token_keeps_grounding('"样品'.encode())
    assert not row.token_keeps_grounding(b'"Xy')
    assert not row.token_keeps_grounding(b'""')  # opens and closes an empty label
    assert row.token_keeps_grounding(b'"Plate1","program":"1')  # closes one value, opens the next, both grounded
    assert not row.token_keeps_grounding(b'"Plate1","program":"Q')
    assert not row.token_keeps_grounding(b'"Plat","program":"1')  # closes inside the name Plate1


def test_wells_are_grounded_only_when_asked(tiny_vocab):
    vocab, _ = tiny_vocab
    generated = (
        '{"commands":[{"func_name":"Aspirate","func_parameters":{"channels":[1,2],"labware":"P","wells":["A1'
    )
    assert row_after(vocab, "P A1 B2", generated).partial is None
    row = row_after(vocab, "P A1 B2", generated, wells=True)
    assert row.partial == b"A1"
    assert row.token_keeps_grounding(b'","B')
    assert not row.token_keeps_grounding(b'","C')
    row.accept_bytes(b'","')
    assert row.partial == b""  # the second element is open
    row.accept_bytes(b'B2"],"vols":[')
    assert row.partial is None


# --- untrained models --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def untrained_runs(tmp_path_factory) -> dict[int, dict[str, list]]:
    """Per seed: the grounded and grammar-only outputs for DESCRIPTIONS (in order)."""
    import torch

    from pipelines.model.model_io import load_model_and_tokenizer
    from pipelines.model.tiny_model import build_tiny_model

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    runs = {}
    try:
        for seed in SEEDS:
            model_dir = build_tiny_model(tmp_path_factory.mktemp(f"seed{seed}"), seed=seed)
            model, tokenizer = load_model_and_tokenizer(model_dir)
            runs[seed] = {
                name: generate_batched(
                    model, tokenizer, DESCRIPTIONS,
                    DecodingConfig(max_new_tokens=800, batch_size=6, grounded=grounded, limits=LIMITS),
                )
                for name, grounded in (("grounded", True), ("grammar_only", False))
            }
    finally:
        torch.set_num_threads(threads)
    return runs


@pytest.mark.parametrize("seed", SEEDS)
def test_grounded_labels_occur_in_the_description(untrained_runs, seed):
    for description, generation in zip(DESCRIPTIONS, untrained_runs[seed]["grounded"], strict=True):
        assert generation.stopped, generation.text
        text = serving_user_message(description)
        for field, value in label_values(generation.text):
            assert value in text, (field, value, text)
        assert UNGROUNDED not in {issue.rule for issue in check_plan(generation.text, description=text).issues}


@pytest.mark.parametrize("seed", SEEDS)
def test_without_grounding_the_same_model_invents_labels(untrained_runs, seed):
    invented = [
        (field, value)
        for description, generation in zip(DESCRIPTIONS, untrained_runs[seed]["grammar_only"], strict=True)
        for field, value in label_values(generation.text)
        if value not in serving_user_message(description)
    ]
    assert invented  # so the grounded run's labels come from grounding, not from this model


def test_the_seeds_cover_every_grounded_field(untrained_runs):
    written = {
        field for runs in untrained_runs.values() for g in runs["grounded"] for field, _ in label_values(g.text)
    }
    assert written == set(grounded_label_fields())
    cjk = [value for runs in untrained_runs.values() for g in runs["grounded"] for _, value in label_values(g.text)
           if not value.isascii()]
    assert cjk  # CJK labels (several tokens per character) were grounded too


@pytest.fixture(scope="module")
def seed_three(tmp_path_factory):
    import torch

    from pipelines.model.model_io import load_model_and_tokenizer
    from pipelines.model.tiny_model import build_tiny_model

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield load_model_and_tokenizer(build_tiny_model(tmp_path_factory.mktemp("seed3"), seed=3))
    torch.set_num_threads(threads)


@pytest.mark.parametrize("wells", [False, True], ids=["labels", "labels_and_wells"])
def test_grounded_batched_equals_one_at_a_time(seed_three, wells):
    model, tokenizer = seed_three
    config = DecodingConfig(max_new_tokens=800, batch_size=4, grounded_wells=wells, limits=LIMITS)
    batched = generate_batched(model, tokenizer, DESCRIPTIONS, config)
    single = generate_one_at_a_time(model, tokenizer, DESCRIPTIONS, config)
    assert [g.token_ids for g in batched] == [g.token_ids for g in single]


def test_grounded_wells_copy_well_names_from_the_description(seed_three):
    # Every letter A-H here starts a well name, so a grounded well can always be completed. Each text states a
    # volume (and the last a count), so the step bounds leave room for steps with wells.
    descriptions = [
        "用通道1从样品板A1吸取20微升", "用通道1从P的B2吸取5ul，分配到C3", "吸取 E6 和 H12 的液体10ul,混匀3次",
    ]
    model, tokenizer = seed_three

    def wells_written(wells: bool) -> list[tuple[str, list[str]]]:
        config = DecodingConfig(max_new_tokens=800, batch_size=3, grounded_wells=wells, limits=LIMITS)
        out = []
        for description, generation in zip(descriptions, generate_batched(model, tokenizer, descriptions, config)):
            commands = check_plan(generation.text).commands
            assert commands is not None, generation.text
            for command in commands:
                for name in ("wells", "srcWells", "dstWells"):
                    if name in command.func_parameters:
                        out.append((serving_user_message(description), command.func_parameters[name]))
        return out

    grounded = wells_written(True)
    assert grounded and all(well in text for text, wells in grounded for well in wells), grounded
    assert any(well not in text for text, wells in wells_written(False) for well in wells)


# --- the gate in predict ---------------------------------------------------------------------------

# The scripted model writes this plan for the default description: its labware is not in the text.
INVENTED_DESCRIPTION = "在P1上运行PCR程序PCR_35"
INVENTED_PLAN = [Command(func_name="PCR", func_parameters={"labware": "Q9", "program": "PCR_35"})]
OTHER_DESCRIPTION = "程序暂停3分钟，然后继续"
OTHER_PLAN = [Command(func_name="Delay", func_parameters={"seconds": 180})]


@pytest.fixture(scope="module")
def inventing_model(tmp_path_factory) -> Path:
    from pipelines.model.tiny_model import build_scripted_model

    return build_scripted_model(
        tmp_path_factory.mktemp("inventing"),
        default_output=render_commands(INVENTED_PLAN),
        triggered_output=render_commands(OTHER_PLAN),
        trigger_description=OTHER_DESCRIPTION,
        default_description=INVENTED_DESCRIPTION,
    )


def predict(model_dir: Path, description: str, grounded: bool) -> tuple[int, str, str]:
    from pipelines.serve.predict import run

    flags = ["--batch-size", "2", "--max-new-tokens", "200", *([] if grounded else ["--no-grounded"])]
    args = predict_args(model_dir, description, *flags)
    stdout, stderr = io.StringIO(), io.StringIO()
    code = run(args, stdin=io.BytesIO(b""), stdout=stdout, stderr=stderr)
    return code, stdout.getvalue(), stderr.getvalue()


def test_predict_refuses_an_ungrounded_plan(inventing_model):
    code, out, err = predict(inventing_model, INVENTED_DESCRIPTION, grounded=False)
    assert code == 1 and out == ""
    assert f"rule {UNGROUNDED}" in err and "command 0 (PCR): field 'labware'='Q9'" in err


def test_predict_with_grounded_decoding_writes_no_invented_label(inventing_model):
    from pipelines.model.model_io import load_model_and_tokenizer
    from pipelines.serve.predict import predict_lines

    model, tokenizer = load_model_and_tokenizer(inventing_model)
    config = DecodingConfig(max_new_tokens=800, limits=LIMITS)
    plan = predict_lines(model, tokenizer, [INVENTED_DESCRIPTION], config)[0]
    assert UNGROUNDED not in {issue.rule for issue in plan.issues}, plan.error_message()
    labels = label_values(plan.raw_output)
    assert labels and ("labware", "Q9") not in labels  # pushed off its script where the script invents
    assert all(value in serving_user_message(INVENTED_DESCRIPTION) for _, value in labels)


def test_cli_turns_grounding_off():
    from pipelines.cli import build_parser

    args = build_parser().parse_args(["predict", "--model", "m", "x"])
    assert args.grounded is True
    assert build_parser().parse_args(["predict", "--model", "m", "--no-grounded", "x"]).grounded is False
