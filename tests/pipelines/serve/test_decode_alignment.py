"""Batched generation keeps each output with its description: a misaligned batch raises, progress is per batch."""

from __future__ import annotations

import pytest

import pipelines.serve.decode as decode
from pipelines.serve.decode import DecodingConfig, generate_batched

DESCRIPTIONS = [
    "Wait 2 minutes", "程序暂停3分钟", "Pick up 200ul tips on channel 3", "弃去通道1的枪头", "Shake Plate1 at 700 rpm",
]
SHORT = DecodingConfig(max_new_tokens=4, constrained=False, batch_size=2)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    import torch

    from pipelines.model.model_io import load_model_and_tokenizer
    from pipelines.model.tiny_model import build_tiny_model

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield load_model_and_tokenizer(build_tiny_model(tmp_path_factory.mktemp("tiny_alignment")))
    torch.set_num_threads(threads)


def test_a_batch_that_loses_a_row_raises_instead_of_shifting_outputs(tiny, monkeypatch) -> None:
    model, tokenizer = tiny
    real_generate = decode._generate

    def loses_last_row(model, tokenizer, prompts, config):
        return real_generate(model, tokenizer, prompts, config)[:-1]

    # Fault injection: no real batch returns fewer rows, but if one did, outputs must not slide onto other cases.
    monkeypatch.setattr(decode, "_generate", loses_last_row)
    with pytest.raises(ValueError, match="shorter"):
        generate_batched(model, tokenizer, DESCRIPTIONS, SHORT)


def test_on_batch_reports_cases_done_out_of_total_after_each_batch(tiny) -> None:
    model, tokenizer = tiny
    calls: list[tuple[int, int]] = []
    with_progress = generate_batched(
        model, tokenizer, DESCRIPTIONS, SHORT, on_batch=lambda done, total: calls.append((done, total))
    )
    assert calls == [(2, 5), (4, 5), (5, 5)]
    without_progress = generate_batched(model, tokenizer, DESCRIPTIONS, SHORT)
    assert [g.token_ids for g in with_progress] == [g.token_ids for g in without_progress]
