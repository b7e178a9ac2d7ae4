"""The one prompt builder: training, evaluation and `predict` all turn a user message into token ids here.

Keeping a single code path is what guarantees the model sees at serving time exactly the token ids it
was trained on. Prompts are rendered text first and tokenized without extra special tokens, because the
chat template already places every special token it wants.
"""

from __future__ import annotations

from functools import lru_cache
from importlib import resources
from typing import Any

import yaml

from data_contracts.tables import EOC_TOKEN


@lru_cache(maxsize=1)
def _catalog_command_names() -> tuple[str, ...]:
    # Read straight from the packaged contract so the prompt can never drift from the catalog.
    text = resources.files("data_contracts").joinpath("command_catalog.yaml").read_text(encoding="utf-8")
    return tuple(yaml.safe_load(text)["commands"])


def system_prompt() -> str:
    return _SYSTEM_PROMPT_TEMPLATE.format(command_names=", ".join(_catalog_command_names()))


# Kept short on purpose: every token of it is paid on every training sample, where it is a large share of an
# average sequence. The rules are the unoptimized baseline's; the command names come from the catalog.
_SYSTEM_PROMPT_TEMPLATE = (
    "Turn the lab step into liquid-handler commands. Output JSON only: "
    '{{"commands": [{{"func_name": ..., "func_parameters": {{...}}}}]}} with exactly these field names. '
    "Commands: {command_names}. "
    "channels, wells, vols, srcWells, dstWells are arrays even for one element. "
    f"Volumes in ul, in text order. End with {EOC_TOKEN}"
)


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
    """Token ids of a training target (canonical JSON followed by `<eoc>`)."""
    return list(tokenizer(completion, add_special_tokens=False)["input_ids"])
