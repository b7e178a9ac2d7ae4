"""The training throughput knobs change how the loss is computed, never its value or its gradients.

`completion_logits_only` (logits only at target positions) and `shared_prefix` (the common system prompt runs
once per micro-batch) must give the plain full-logits loss and the same LoRA gradients, on the project's own
prompts (so the rows really share the chat template's system prompt) and with padded rows of different lengths.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from pipelines.config import TrainConfig
from pipelines.model.base_model import resolve_base_model
from pipelines.model.model_io import load_causal_lm, load_tokenizer
from pipelines.model.prompts import build_completion_ids, build_prompt_ids, system_prompt
from pipelines.model.trainer import (
    build_peft_config,
    completion_token_losses,
    shared_prefix_length,
    store_frozen_weights_in_bf16,
)

DESCRIPTIONS = [
    (
        "行1:用通道1从样品板A1吸取20ul",
        '{"commands": [{"func_name": "Aspirate", "func_parameters": {"channels": [1]}}]}',
    ),
    ("Wait 2 minutes", '{"commands": [{"func_name": "Delay", "func_parameters": {"seconds": 120}}]}'),
    ("Pick up 200ul tips on channel 3 and then drop them", '{"commands": []}'),
]


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory) -> Path:
    return Path(resolve_base_model("tiny", tmp_path_factory.mktemp("artifacts")).path)


def _batch(tokenizer) -> dict[str, torch.Tensor]:
    rows = []
    for description, completion in DESCRIPTIONS:
        prompt = build_prompt_ids(tokenizer, description)
        target = build_completion_ids(tokenizer, completion + "<eoc>")
        rows.append((prompt + target, [-100] * len(prompt) + target))
    width = max(len(ids) for ids, _ in rows)
    input_ids = torch.full((len(rows), width), tokenizer.pad_token_id)
    labels = torch.full((len(rows), width), -100)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, (ids, row_labels) in enumerate(rows):
        input_ids[i, : len(ids)] = torch.tensor(ids)
        labels[i, : len(ids)] = torch.tensor(row_labels)
        mask[i, : len(ids)] = 1
    return {"input_ids": input_ids, "attention_mask": mask, "labels": labels}


def _loss_and_grads(model, batch, **knobs) -> tuple[float, dict[str, torch.Tensor]]:
    model.zero_grad()
    inputs = {"input_ids": batch["input_ids"], "attention_mask": batch["attention_mask"]}
    _, losses, keep = completion_token_losses(model, inputs, batch["labels"], **knobs)
    assert losses.numel() == int(keep.sum()) == int((batch["labels"][:, 1:] != -100).sum())
    losses.mean().backward()
    grads = {name: p.grad.detach().clone() for name, p in model.named_parameters() if p.grad is not None}
    return float(losses.mean()), grads


def test_rows_share_the_system_prompt(tiny_dir):
    tokenizer = load_tokenizer(tiny_dir)
    batch = _batch(tokenizer)
    prefix = shared_prefix_length(batch["input_ids"], batch["attention_mask"], batch["labels"])
    # The chat template's system turn is common to every row and never labelled.
    system_turn = tokenizer.apply_chat_template([{"role": "system", "content": system_prompt()}], tokenize=False)
    assert prefix >= len(tokenizer(system_turn, add_special_tokens=False)["input_ids"]) > 10
    assert (batch["labels"][:, : prefix + 1] == -100).all()


@pytest.mark.parametrize(
    "knobs",
    [
        {"completion_logits_only": True, "shared_prefix": False},
        {"completion_logits_only": False, "shared_prefix": True},
        {"completion_logits_only": True, "shared_prefix": True},
    ],
)
def test_knobs_give_the_plain_loss_and_gradients(tiny_dir, knobs):
    from peft import get_peft_model

    torch.manual_seed(0)
    tokenizer = load_tokenizer(tiny_dir)
    config = TrainConfig(base_model="tiny", lora_dropout=0.0)
    model = get_peft_model(load_causal_lm(tiny_dir, dtype=torch.float32),
                           build_peft_config(config, tokenizer.convert_tokens_to_ids("<eoc>")))
    model.train()
    # Non-zero LoRA B matrices, so the adapters really change the prefix's activations.
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if "lora_B" in name:
                parameter.normal_(std=0.05)
    batch = _batch(tokenizer)
    plain_loss, plain_grads = _loss_and_grads(model, batch, completion_logits_only=False, shared_prefix=False)
    loss, grads = _loss_and_grads(model, batch, **knobs)

    assert loss == pytest.approx(plain_loss, rel=1e-5)
    assert plain_grads.keys() == grads.keys() and any("lora_A" in name for name in grads)
    for name, grad in plain_grads.items():
        torch.testing.assert_close(grads[name], grad, rtol=1e-4, atol=1e-6, msg=lambda m: f"{name}: {m}")


def test_frozen_weights_under_the_adapters_in_bf16(tiny_dir):
    from peft import get_peft_model

    tokenizer = load_tokenizer(tiny_dir)
    config = TrainConfig(base_model="tiny", lora_target_modules=["q_proj", "down_proj"])
    model = get_peft_model(load_causal_lm(tiny_dir, dtype=torch.float32),
                           build_peft_config(config, tokenizer.convert_tokens_to_ids("<eoc>")))
    store_frozen_weights_in_bf16(model)
    dtypes = {name: p.dtype for name, p in model.named_parameters()}
    frozen = {name for name in dtypes if ".q_proj.base_layer." in name or ".down_proj.base_layer." in name}
    assert frozen and {dtypes[name] for name in frozen} == {torch.bfloat16}
    # The adapters and every other weight (the embeddings under the <eoc> row too) stay fp32.
    assert {dtype for name, dtype in dtypes.items() if name not in frozen} == {torch.float32}
