"""A tiny random causal LM with a real tokenizer, built offline in about a second.

Tests and the `smoke` profile use it instead of a downloaded model: it has the same shape of
interface as SmolLM2 (ChatML chat template, `<eoc>` special token, tied embeddings, safetensors),
so every code path that runs on the real base model runs on it too.
"""

from __future__ import annotations

from pathlib import Path

EOC_TOKEN = "<eoc>"
PAD_TOKEN = "<pad>"
IM_START = "<|im_start|>"
IM_END = "<|im_end|>"

# Same shape as SmolLM2-Instruct's template (ChatML); a default system turn keeps prompts well formed.
CHATML_TEMPLATE = (
    "{% for message in messages %}"
    "{% if loop.first and messages[0]['role'] != 'system' %}"
    "{{ '<|im_start|>system\nYou are a helpful AI assistant.<|im_end|>\n' }}"
    "{% endif %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)

# Enough text for BPE merges over the corpus' vocabulary: Chinese SOP phrasing, English phrasing,
# catalog names, JSON punctuation and digits. Anything else still encodes through the byte alphabet.
_TRAINING_TEXT = """
行1:用通道1-4从样品板A1-D1各吸取20ul，分配到反应板B3-E3，每孔20微升，然后弃去枪头。
步骤4：1-4号通道安装200 µL吸头后，自储液槽A1-D1每通道吸取120 µL，注入细胞板B3-E3（每孔120 µL），最后退掉吸头。
程序暂停，计时3小时后继续。摇板：反应板A，700转每分钟，持续4分钟。孵育 37 摄氏度 30 分钟。混匀 5 次，毫升，微升。
请把下面的实验步骤转换成机器人指令：实验记录：请生成对应的移液工作站命令。问：以下操作对应哪些机器人命令？答：
Draw 12 µl per channel out of Src_Plate B1-E1, channels 1-4. Keep Assay_Plate at 42 °C for 45 minutes (incubation).
Convert this lab step into robot commands: Bench note: Write the liquid-handler commands for it.
Q: Which robot commands carry out the following step? A: Pick up 50ul tips on the first 4 channels, then drop the tips.
You are a helpful AI assistant. Output JSON only. Use the exact field names func_name and func_parameters.
{"commands": [{"func_name": "GetDiti", "func_parameters": {"ditiType": "50ul", "channels": [1, 2, 3, 4]}}]}
{"commands": [{"func_name": "Aspirate", "func_parameters": {"channels": [1], "labware": "Plate1", "wells": ["A1"], "vols": [20]}}]}
{"commands": [{"func_name": "Dispense", "func_parameters": {"channels": [1, 2], "labware": "PCR_Plate", "wells": ["B3", "C3"], "vols": [10.5, 10.5], "liquidClass": "Water"}}]}
{"commands": [{"func_name": "Mix", "func_parameters": {"times": 5}}, {"func_name": "Transfer", "func_parameters": {"srcLabware": "A", "srcWells": ["H12"], "dstLabware": "B", "dstWells": ["G11"]}}]}
{"commands": [{"func_name": "DropDiti"}, {"func_name": "Delay", "func_parameters": {"seconds": 10800}}, {"func_name": "Incubate", "func_parameters": {"temperature": 42}}]}
{"commands": [{"func_name": "Shake", "func_parameters": {"rpm": 700}}, {"func_name": "PCR", "func_parameters": {"program": "PCR_35"}}, {"func_name": "MoveLabware", "func_parameters": {"position": "Deck3"}}]}
0123456789 10ul 50ul 200ul 1000ul A B C D E F G H 1 2 3 4 5 6 7 8 9 10 11 12 ml mL uL μL
"""


def _train_tokenizer(vocab_size: int):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=[PAD_TOKEN, IM_START, IM_END, EOC_TOKEN],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),  # byte fallback: every string encodes
        show_progress=False,
    )
    tokenizer.train_from_iterator([_TRAINING_TEXT] * 4, trainer=trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tokenizer,
        bos_token=IM_START,
        eos_token=IM_END,
        pad_token=PAD_TOKEN,
        additional_special_tokens=[EOC_TOKEN],
    )
    fast.chat_template = CHATML_TEMPLATE
    return fast


def build_tiny_model(out_dir: Path, seed: int = 0, vocab_size: int = 1024) -> Path:
    """Save a tiny random LlamaForCausalLM + tokenizer (safetensors) into `out_dir` and return it."""
    import torch
    from transformers import GenerationConfig, LlamaConfig, LlamaForCausalLM

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    tokenizer = _train_tokenizer(vocab_size)
    eoc_id = tokenizer.convert_tokens_to_ids(EOC_TOKEN)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=2048,
        tie_word_embeddings=True,  # as in SmolLM2, so the tied-embedding paths get exercised
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    torch.manual_seed(seed)
    model = LlamaForCausalLM(config)
    model.generation_config = GenerationConfig(
        eos_token_id=[tokenizer.eos_token_id, eoc_id],
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id,
        do_sample=False,
    )
    model.save_pretrained(out_dir, safe_serialization=True)
    tokenizer.save_pretrained(out_dir)
    return out_dir
