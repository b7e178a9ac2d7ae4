"""The one prompt builder: training, evaluation and `predict` all turn a user message into token ids here.

Keeping a single code path is what guarantees the model sees at serving time exactly the token ids it
was trained on. Prompts are rendered text first and tokenized without extra special tokens, because the
chat template already places every special token it wants.
"""

from __future__ import annotations

from typing import Any

from data_contracts.tables import EOC_TOKEN
from pipelines.model.plan_layout import model_target


def system_prompt() -> str:
    return _SYSTEM_PROMPT


# Kept to one short line on purpose: the prompt's tokens are paid in every training step and every decoding
# step attends to them, and the fine-tuned model learns the output format from its targets, not from rules
# stated here (the catalog grammar enforces them at decoding time).
_SYSTEM_PROMPT = f"Turn the lab step into liquid-handler commands: JSON, then {EOC_TOKEN}."


def serving_user_message(description: str) -> str:
    """The user message evaluation and `predict` send for a bare description.

    Training rows carry their own templated prompt built from the normalized description (NFKC, step
    prefixes stripped); the `direct` templates of the `without_prefix` variant are exactly that text.
    Serving normalizes the same way, so "行1：通道１-４…" from a user reaches the model as it was trained on.
    """
    from pipelines.data.normalize import normalize_text

    return normalize_text(description)


def build_messages(user_message: str) -> list[dict[str, str]]:
    return [
        {"role": "system", "content": system_prompt()},
        {"role": "user", "content": user_message},
    ]


def build_prompt_text(tokenizer: Any, user_message: str) -> str:
    if not getattr(tokenizer, "chat_template", None):
        raise ValueError("the tokenizer has no chat template; the prompt builder needs one")
    # enable_thinking=False: Qwen3 templates would otherwise open a reasoning block before the answer;
    # templates that do not know the variable ignore it.
    return tokenizer.apply_chat_template(
        build_messages(user_message), tokenize=False, add_generation_prompt=True, enable_thinking=False
    )


def build_prompt_ids(tokenizer: Any, user_message: str) -> list[int]:
    text = build_prompt_text(tokenizer, user_message)
    return list(tokenizer(text, add_special_tokens=False)["input_ids"])


def build_completion_ids(tokenizer: Any, completion: str) -> list[int]:
    """Token ids of a training target (canonical JSON followed by `<eoc>`), in the model's layout (`model_target`)."""
    return list(tokenizer(model_target(completion), add_special_tokens=False)["input_ids"])
