"""The one prompt builder: content of the system prompt and identical ids across training, eval and predict."""

from __future__ import annotations

import pytest

from pipelines.model.model_io import load_tokenizer
from pipelines.model.prompts import (
    build_messages,
    build_prompt_ids,
    build_prompt_text,
    serving_user_message,
    system_prompt,
)
from pipelines.model.training_data import tokenize_rows
from tests.helpers import completion_for

DESCRIPTIONS = [
    "行1:用通道1-4从样品板A1-D1各吸取20ul",
    "  Draw 12 µl per channel out of Src_Plate B1-E1, channels 1-4.\n",
    "程序暂停，计时3小时后继续",
]


def test_system_prompt_is_one_short_line_that_names_the_output_and_its_end() -> None:
    prompt = system_prompt()
    # Every training step and every decoded token pays for its tokens: a sentence, not a rulebook.
    assert "\n" not in prompt and len(prompt.split()) <= 16
    assert "JSON" in prompt and prompt.rstrip(".").endswith("<eoc>")


def test_messages_are_system_then_user():
    messages = build_messages("行1:x")
    assert [m["role"] for m in messages] == ["system", "user"]
    assert messages[1]["content"] == "行1:x"


def test_prompt_is_rendered_with_the_chat_template_and_ends_with_the_assistant_turn(tiny_base_dir):
    tokenizer = load_tokenizer(tiny_base_dir)
    text = build_prompt_text(tokenizer, "行1:x")
    assert text.startswith("<|im_start|>system\n")
    assert text.endswith("<|im_start|>assistant\n")
    ids = build_prompt_ids(tokenizer, "行1:x")
    assert tokenizer.decode(ids) == text
    assert ids.count(tokenizer.convert_tokens_to_ids("<|im_start|>")) == 3


def test_prompt_without_chat_template_is_refused(tiny_base_dir):
    tokenizer = load_tokenizer(tiny_base_dir)
    tokenizer.chat_template = None
    with pytest.raises(ValueError, match="chat template"):
        build_prompt_text(tokenizer, "x")


@pytest.mark.parametrize("description", DESCRIPTIONS)
def test_training_evaluation_and_predict_build_identical_prompt_ids(tiny_base_dir, description):
    import pandas as pd

    tokenizer = load_tokenizer(tiny_base_dir)
    serving_ids = build_prompt_ids(tokenizer, serving_user_message(description))

    # Training: a row whose prompt is the description as served, tokenized by the training code.
    completion = completion_for([("Delay", {"seconds": 60})])
    row = pd.DataFrame([{"sample_id": "a", "prompt": serving_user_message(description),
                         "completion": completion, "weight": 1.0, "split": "train"}])
    dataset, dropped = tokenize_rows(row, tokenizer, max_length=4096)
    assert dropped == 0
    labels = dataset[0]["labels"]
    n_prompt = sum(1 for label in labels if label == -100)
    training_prompt_ids = dataset[0]["input_ids"][:n_prompt]
    assert training_prompt_ids == serving_ids

    # Evaluation and predict both decode through pipelines.serve.decode, whose prompts come from this builder.
    from pipelines.serve.decode import prompt_ids_for

    assert prompt_ids_for(tokenizer, [description]) == [serving_ids]


def test_serving_message_is_the_normalized_description_training_rows_are_built_from():
    from pipelines.data.normalize import normalize_text

    raw = "行1：用通道１-４从样品板A1-D1各吸取20µl  "
    assert serving_user_message(raw) == normalize_text(raw) == "用通道1,2,3,4从样品板A1,B1,C1,D1各吸取20ul"
