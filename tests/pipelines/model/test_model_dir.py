"""A model directory that explains itself: trained chat template, plan.schema.json and a model card.

The scripted tiny model (`build_scripted_model`) fixes greedy output by construction, so a plain-transformers
process (which imports nothing from this project) must reproduce the project's output token for token on any CPU.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from data_contracts.commands import Command
from data_contracts.forms import render_json_commands
from pipelines.model.model_card import (
    CAPACITY_LIMIT,
    CHAT_TEMPLATE_FILE,
    MODEL_CARD_FILE,
    PLAN_SCHEMA_FILE,
    EvaluationSummary,
    base_chat_template,
    explain_model_dir,
)
from pipelines.model.plan_layout import render_commands

# Already normalized (normalize_text leaves them as they are), so the raw text a plain-transformers user sends
# is the text the project's prompt builder sends.
TRIGGER_DESCRIPTION = "Drop the tips of channel 4"
DEFAULT_DESCRIPTION = "Wait 300s"
OTHER_DESCRIPTION = "用通道1,2安装50ul枪头后等待300s"
TRIGGERED_PLAN = [Command(func_name="DropDiti", func_parameters={"channels": [4]})]
DEFAULT_PLAN = [Command(func_name="Delay", func_parameters={"seconds": 300})]
# Both languages, a raw step prefix, full-width characters and several lines: the template must not care.
PROMPT_DESCRIPTIONS = [
    TRIGGER_DESCRIPTION,
    "行1:用通道1-4从样品板A1-D1各吸取20ul",
    "摇板：反应板A，７００转每分钟，持续4分钟",
    "Pick up 50ul tips on channels 1-2,\nthen drop them.",
    'Quote " and backslash \\ and {{ braces }}',
]
# SmolLM2-135M-Instruct's template, as the prepared default base model carries it.
SMOLLM2_TEMPLATE = (
    "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}{{ '<|im_start|>system\n"
    "You are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n' }}{% endif %}"
    "{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)


@pytest.fixture(scope="module")
def scripted_dir(tmp_path_factory) -> Path:
    from pipelines.model.tiny_model import build_scripted_model

    return build_scripted_model(
        tmp_path_factory.mktemp("scripted") / "model",
        default_output=render_commands(DEFAULT_PLAN),
        triggered_output=render_commands(TRIGGERED_PLAN),
        trigger_description=TRIGGER_DESCRIPTION,
        default_description=DEFAULT_DESCRIPTION,
    )


@pytest.fixture()
def model_copy(scripted_dir: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(scripted_dir, tmp_path / "model"))


def _ids(encoded) -> list[int]:
    return list(encoded["input_ids"] if hasattr(encoded, "keys") else encoded)


@pytest.mark.parametrize("base_template", [None, SMOLLM2_TEMPLATE], ids=["tiny-chatml", "smollm2"])
def test_chat_template_gives_the_prompt_builders_ids(model_copy: Path, base_template: str | None):
    from transformers import AutoTokenizer

    from pipelines.model.model_io import load_tokenizer
    from pipelines.model.prompts import build_prompt_ids, system_prompt

    if base_template is not None:
        tokenizer = load_tokenizer(model_copy)
        tokenizer.chat_template = base_template
        tokenizer.save_pretrained(model_copy)
    project_tokenizer = load_tokenizer(model_copy)  # the base template: what training rendered prompts with
    explained = explain_model_dir(model_copy)
    assert explained.system_prompt == system_prompt()

    plain = AutoTokenizer.from_pretrained(str(model_copy))  # what any HF tool loads
    assert plain.chat_template == (model_copy / CHAT_TEMPLATE_FILE).read_text(encoding="utf-8")
    for description in PROMPT_DESCRIPTIONS:
        expected = build_prompt_ids(project_tokenizer, description)
        got = _ids(plain.apply_chat_template([{"role": "user", "content": description}], add_generation_prompt=True))
        assert got == expected, description
        # The project's builder on the explained tokenizer (it sends the system turn itself): unchanged too.
        assert build_prompt_ids(plain, description) == expected
    # A caller's own system message still wins over the trained default.
    own = plain.apply_chat_template(
        [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "x"}],
        add_generation_prompt=True, tokenize=False,
    )
    assert "Be brief." in own and system_prompt() not in own


def test_explaining_twice_does_not_stack_the_prompt(model_copy: Path):
    from pipelines.model.model_io import load_tokenizer

    original = load_tokenizer(model_copy).chat_template
    explain_model_dir(model_copy)
    once = (model_copy / CHAT_TEMPLATE_FILE).read_text(encoding="utf-8")
    explain_model_dir(model_copy)
    assert (model_copy / CHAT_TEMPLATE_FILE).read_text(encoding="utf-8") == once
    assert base_chat_template(once) == original


def test_plan_schema_is_the_decoding_schema_and_compiles_for_an_outside_decoder(model_copy: Path):
    import xgrammar as xgr
    from xgrammar.testing import _is_grammar_accept_string

    from pipelines.serve.constrained import decoding_schema

    explain_model_dir(model_copy)
    schema = json.loads((model_copy / PLAN_SCHEMA_FILE).read_text(encoding="utf-8"))
    assert schema == decoding_schema()
    grammar = xgr.Grammar.from_json_schema(json.dumps(schema), any_whitespace=False)
    good_params = {"channels": [1, 2], "labware": "P1", "wells": ["A1", "B1"], "vols": [20, 20]}
    good = [Command(func_name="Aspirate", func_parameters=good_params)]
    assert _is_grammar_accept_string(grammar, render_json_commands(good))
    # One well for two channels: the per-channel length rule the plain catalog schema cannot state.
    short = [Command(func_name="Aspirate", func_parameters={**good_params, "wells": ["A1"]})]
    assert not _is_grammar_accept_string(grammar, render_json_commands(short))
    assert not _is_grammar_accept_string(grammar, '{"commands": [{"func_name": "Fly", "func_parameters": {}}]}')


def test_model_card_is_written_from_the_run(model_copy: Path):
    manifest = {
        "kind": "merged_model",
        "profile": "default",
        "merged_weights_sha256": "ab" * 32,
        "adapter_sha256": "cd" * 32,
        "base_model": {
            "source": "smollm2-gguf",
            "weights_sha256": "ef" * 32,
            "model_type": "llama",
            "parameter_count": 134515584,
        },
        "training_config": {
            "profile": "default",
            "lora_r": 16,
            "lora_alpha": 32,
            "lora_dropout": 0.0,
            "lora_target_modules": ["q_proj", "v_proj"],
            "learning_rate": 0.002,
        },
        "data": {
            "table": "augmented_training_set",
            "delta_version": 7,
            "content_hash": "12" * 32,
            "train_source_index": ["a", "b"],
            "eval_source_index": ["c"],
            "raw_files_md5": {"training_data.jsonl": "9" * 32},
        },
        "git": {"commit": "f" * 40, "dirty": False},
    }
    evaluation = EvaluationSummary(
        gate_passed=True,
        gate_description="all eval-slice rates meet gate.default",
        gate_metadata={
            "exact_match": 0.875, "min_exact_match": 0.8, "json_valid_rate": 1.0, "min_json_valid_rate": 0.99
        },
        headline={"n_cases": 290, "exact_match": 0.8125},
        slices={
            "eval": {"cases_evaluated": 160, "json_valid_rate": 1.0, "catalog_valid_rate": 0.99, "exact_match": 0.875}
        },
        tag_scores=[
            {"slice": "eval", "tag": "time_conversion", "cases": 10, "exact_matches": 9, "exact_match": 0.9},
            {"slice": "all", "tag": "time_conversion", "cases": 14, "exact_matches": 12, "exact_match": 12 / 14},
        ],
        constrained=True,
        results_delta_version=3,
    )
    explain_model_dir(model_copy, manifest=manifest, evaluation=evaluation)
    card = (model_copy / MODEL_CARD_FILE).read_text(encoding="utf-8")

    assert card.startswith("---\nlibrary_name: transformers\n")
    assert "base_model: HuggingFaceTB/SmolLM2-135M-Instruct" in card
    assert "ab" * 32 in card and "cd" * 32 in card and "ef" * 32 in card  # merged, adapter and base hashes
    assert "| r | 16 |" in card and "| alpha | 32 |" in card and "q_proj, v_proj" in card
    assert "`augmented_training_set` Delta version 7" in card and "12" * 32 in card and "9" * 32 in card
    assert "**passed**" in card and "| exact_match | 0.875 | >= 0.8 |" in card
    assert "| eval | 160 | 1 | 0.99 | 0.875 |" in card
    assert "| time_conversion | 9/10 (0.90) | 12/14 (0.86) |" in card
    assert CAPACITY_LIMIT[1:] in card
    assert "AutoModelForCausalLM.from_pretrained" in card and "StructuredOutputsParams(json=schema)" in card
    assert "validate_commands" in card and PLAN_SCHEMA_FILE in card
    assert f"python -m pipelines lineage {model_copy} --verify" in card

    # The merged directory, before any evaluation, says so rather than showing numbers.
    explain_model_dir(model_copy, manifest=manifest)
    assert "Not evaluated yet" in (model_copy / MODEL_CARD_FILE).read_text(encoding="utf-8")


# Imports only the standard library, torch and transformers: what any user of the directory has.
PLAIN_TRANSFORMERS_SCRIPT = """
import json
import sys

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

model_dir, descriptions = sys.argv[1], json.loads(sys.argv[2])
tokenizer = AutoTokenizer.from_pretrained(model_dir)
model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32, use_safetensors=True)
results = []
for description in descriptions:
    inputs = tokenizer.apply_chat_template(
        [{"role": "user", "content": description}], add_generation_prompt=True, return_tensors="pt", return_dict=True
    )
    output = model.generate(**inputs, do_sample=False, max_new_tokens=160)
    new_tokens = output[0, inputs["input_ids"].shape[1]:]
    results.append({"prompt_ids": inputs["input_ids"][0].tolist(),
                    "text": tokenizer.decode(new_tokens, skip_special_tokens=True)})
project = sorted({name.split(".")[0] for name in sys.modules} & {"pipelines", "data_contracts", "assets"})
print(json.dumps({"results": results, "project_modules": project}))
"""


def test_plain_transformers_reproduces_the_projects_greedy_output(model_copy: Path, tmp_path: Path):
    from pipelines.data.normalize import normalize_text
    from pipelines.model.model_io import load_model_and_tokenizer
    from pipelines.serve.decode import DecodingConfig, generate_batched, prompt_ids_for

    descriptions = [TRIGGER_DESCRIPTION, DEFAULT_DESCRIPTION, OTHER_DESCRIPTION]
    assert all(normalize_text(d) == d for d in descriptions)  # the plain user sends what the project sends
    model, tokenizer = load_model_and_tokenizer(model_copy)
    # Coverage guidance is the project's own decoding step on top of the model's greedy plan: without it, plain
    # transformers has all it needs. ("用通道1,2…" states values the scripted Delay plan does not use.)
    config = DecodingConfig(max_new_tokens=160, batch_size=3, coverage=False)
    project = generate_batched(model, tokenizer, descriptions, config)
    project_texts = [generation.text for generation in project]
    assert project_texts == [render_commands(TRIGGERED_PLAN), render_commands(DEFAULT_PLAN),
                             render_commands(DEFAULT_PLAN)]
    assert all(generation.stopped for generation in project)

    explain_model_dir(model_copy)
    script = tmp_path / "plain_transformers.py"
    script.write_text(PLAIN_TRANSFORMERS_SCRIPT, encoding="utf-8")
    env = {**os.environ, "PYTHONPATH": "", "TOKENIZERS_PARALLELISM": "false"}
    completed = subprocess.run(
        [sys.executable, str(script), str(model_copy), json.dumps(descriptions, ensure_ascii=False)],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300,
    )
    assert completed.returncode == 0, completed.stderr
    report = json.loads(completed.stdout.strip().splitlines()[-1])
    assert report["project_modules"] == []
    assert [r["prompt_ids"] for r in report["results"]] == prompt_ids_for(tokenizer, descriptions)
    assert [r["text"] for r in report["results"]] == project_texts

    # The card's own transformers snippet, run as written, gives the plan too.
    card = (model_copy / MODEL_CARD_FILE).read_text(encoding="utf-8")
    snippet = card.split("## Load it with transformers", 1)[1].split("```python\n", 1)[1].split("```", 1)[0]
    assert f'model_dir = "{model_copy}"' in snippet and f'description = "{DEFAULT_DESCRIPTION}"' in snippet
    script.write_text(snippet + "print(json.dumps(plan, ensure_ascii=False))\n", encoding="utf-8")
    completed = subprocess.run([sys.executable, str(script)], cwd=tmp_path, env=env, capture_output=True, text=True,
                               timeout=300)
    assert completed.returncode == 0, completed.stderr
    assert json.loads(completed.stdout.strip().splitlines()[-1]) == json.loads(render_json_commands(DEFAULT_PLAN))
