"""A tiny random causal LM with a real tokenizer, built offline, fast enough for every test to build its own.

Tests and the `smoke` profile use it instead of a downloaded model: it has the same shape of
interface as SmolLM2 (ChatML chat template, `<eoc>` special token, tied embeddings, safetensors),
so every code path that runs on the real base model runs on it too.
"""

from __future__ import annotations

from pathlib import Path

from data_contracts.tables import EOC_TOKEN

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
# catalog names, plans in the layout the model writes (pipelines.model.plan_layout) and digits. Anything else
# still encodes through the byte alphabet.
_TRAINING_TEXT = (
    "\n"
    "行1:用通道1-4从样品板A1-D1各吸取20ul，分配到反应板B3-E3，每孔20微升，然后弃去枪头。\n"
    "步骤4：1-4号通道安装200 µL吸头后，自储液槽A1-D1每通道吸取120 µL，注入细胞板B3-E3（每孔120 µL），"
    "最后退掉吸头。\n"
    "程序暂停，计时3小时后继续。摇板：反应板A，700转每分钟，持续4分钟。孵育 37 摄氏度 30 分钟。混匀 5 "
    "次，毫升，微升。\n"
    "请把下面的实验步骤转换成机器人指令：实验记录：请生成对应的移液工作站命令。问："
    "以下操作对应哪些机器人命令？答：\n"
    "Draw 12 µl per channel out of Src_Plate B1-E1, channels 1-4. Keep Assay_Plate at 42 °C for 45 "
    "minutes (incubation).\n"
    "Convert this lab step into robot commands: Bench note: Write the liquid-handler commands for it.\n"
    "Q: Which robot commands carry out the following step? A: Pick up 50ul tips on the first 4 channels, "
    "then drop the tips.\n"
    "You are a helpful AI assistant. Output JSON only. Use the exact field names func_name and "
    "func_parameters.\n"
    '{"commands":[{"func_name":"GetDiti","func_parameters":{"ditiType":"50ul","channels":[1,2,'
    "3,4]}}]}\n"
    '{"commands":[{"func_name":"Aspirate","func_parameters":{"channels":[1],"labware":"Plate1",'
    '"wells":["A1"],"vols":[20]}}]}\n'
    '{"commands":[{"func_name":"Dispense","func_parameters":{"channels":[1,2],"labware":'
    '"PCR_Plate","wells":["B3","C3"],"vols":[10.5,10.5],"liquidClass":"Water"}}]}\n'
    '{"commands":[{"func_name":"Mix","func_parameters":{"times":5}},{"func_name":"Transfer",'
    '"func_parameters":{"srcLabware":"A","srcWells":["H12"],"dstLabware":"B","dstWells":'
    '["G11"]}}]}\n'
    '{"commands":[{"func_name":"DropDiti"},{"func_name":"Delay","func_parameters":{"seconds":'
    '10800}},{"func_name":"Incubate","func_parameters":{"temperature":42}}]}\n'
    '{"commands":[{"func_name":"Shake","func_parameters":{"rpm":700}},{"func_name":"PCR",'
    '"func_parameters":{"program":"PCR_35"}},{"func_name":"MoveLabware","func_parameters":'
    '{"position":"Deck3"}}]}\n'
    "0123456789 10ul 50ul 200ul 1000ul A B C D E F G H 1 2 3 4 5 6 7 8 9 10 11 12 ml mL uL μL\n"
)


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


# --- a tiny model whose greedy output is set by its weights -------------------------------------------

# Pieces of different widths, so the two outputs' pieces do not line up (each piece must be one chain's).
_DEFAULT_PIECE_CHARS = 16
_TRIGGERED_PIECE_CHARS = 13
# Sequences up to this many tokens still trigger: the trigger signal is diluted by 1/length (see below).
SCRIPTED_MAX_POSITIONS = 8192
# Logit weights, each 4 times what it must beat, so no float rounding can reorder them: the triggered
# start (gain x trigger fraction, at least 1/SCRIPTED_MAX_POSITIONS) beats the default start, and the
# next piece beats the trigger gain. Logits stay small enough for any float type.
_TRIGGER_GAIN = 4.0
_NEXT_PIECE_WEIGHT = 4.0 * _TRIGGER_GAIN
_DEFAULT_START_WEIGHT = _TRIGGER_GAIN / (4.0 * SCRIPTED_MAX_POSITIONS)
# Residual-stream dimensions of the scripted model.
_FLAG_DIM = 0  # written by attention: the fraction of visible tokens that are trigger tokens
_MARKER_DIM = 1  # set in the embedding of trigger tokens
_FIRST_STATE_DIM = 2  # one dimension per chain state: the prompt's last token, then each piece


def _pieces(text: str, width: int) -> list[str]:
    return [text[start : start + width] for start in range(0, len(text), width)]


def _distinct_pieces(default_output: str, triggered_output: str) -> tuple[list[str], list[str]]:
    """Both outputs cut into pieces that are all different (a piece's token decides the next one): the first
    of a few widths that gives such pieces."""
    repeated: list[str] = []
    for wider in range(8):
        default_pieces = _pieces(default_output, _DEFAULT_PIECE_CHARS + wider)
        triggered_pieces = _pieces(triggered_output, _TRIGGERED_PIECE_CHARS + wider)
        every_piece = default_pieces + triggered_pieces
        if len(set(every_piece)) == len(every_piece):
            return default_pieces, triggered_pieces
        repeated = sorted({piece for piece in every_piece if every_piece.count(piece) > 1})
    raise ValueError(f"an output piece occurs twice, so the next piece would be ambiguous: {repeated}")


def build_scripted_model(
    out_dir: Path,
    default_output: str,
    triggered_output: str,
    trigger_description: str,
    default_description: str,
    vocab_size: int = 1024,
) -> Path:
    """Save a tiny Llama + tokenizer whose greedy output is fixed by construction, not by training.

    For a prompt holding a token that `trigger_description`'s prompt has and `default_description`'s
    has not, greedy decoding emits `triggered_output` then `<eoc>`; for any other prompt (the default
    description's included) it emits `default_output` then `<eoc>`. Tests that need exact generated
    text use it: a model overfitted by a few optimizer steps learns a different plan on another CPU.

    How: each output is cut into pieces that become tokens of their own, so a chain of distinct tokens
    spells it. Every layer is zero except one attention head with zero queries, which therefore averages
    its values over all visible tokens: only trigger tokens have a non-zero value, so the trigger signal
    is exactly 0 for a default prompt whatever the float path, and at least 1/length of its full size
    for a triggered one. The output layer reads the current token (which piece comes next)
    and, at the prompt's last token only, the trigger signal (which chain to start). The weights
    above separate every decision by a factor of 4.
    """
    import torch
    from tokenizers import AddedToken
    from transformers import GenerationConfig, LlamaConfig, LlamaForCausalLM

    from pipelines.model.prompts import build_prompt_ids, serving_user_message

    out_dir = Path(out_dir)
    tokenizer = _train_tokenizer(vocab_size)
    default_pieces, triggered_pieces = _distinct_pieces(default_output, triggered_output)
    every_piece = default_pieces + triggered_pieces
    tokenizer.add_tokens([AddedToken(piece, normalized=False, special=False) for piece in every_piece])
    piece_ids: dict[str, int] = {}
    for piece in every_piece:
        ids = tokenizer(piece, add_special_tokens=False)["input_ids"]
        if len(ids) != 1:
            raise ValueError(f"output piece {piece!r} does not encode as one token: {ids}")
        piece_ids[piece] = ids[0]
    for output, pieces in ((default_output, default_pieces), (triggered_output, triggered_pieces)):
        decoded = tokenizer.decode([piece_ids[piece] for piece in pieces], skip_special_tokens=False)
        if decoded != output:
            raise ValueError(f"the pieces of {output!r} decode to {decoded!r}")

    prompts = [
        build_prompt_ids(tokenizer, serving_user_message(text)) for text in (trigger_description, default_description)
    ]
    last_prompt_token = prompts[0][-1]
    if prompts[1][-1] != last_prompt_token or last_prompt_token in piece_ids.values():
        raise ValueError("the two prompts must end with the same token, one that is not an output piece")
    eoc_id = tokenizer.convert_tokens_to_ids(EOC_TOKEN)
    not_triggers = {last_prompt_token, eoc_id, *piece_ids.values(), *tokenizer.all_special_ids}
    trigger_ids = sorted(set(prompts[0]) - set(prompts[1]) - not_triggers)
    if not trigger_ids:
        raise ValueError(f"{trigger_description!r} has no prompt token that {default_description!r} lacks")

    states = [last_prompt_token, *piece_ids.values()]
    hidden_size = 16 * ((_FIRST_STATE_DIM + len(states) + 15) // 16)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=hidden_size,
        intermediate_size=16,
        num_hidden_layers=1,
        num_attention_heads=1,
        num_key_value_heads=1,
        max_position_embeddings=SCRIPTED_MAX_POSITIONS,
        tie_word_embeddings=False,  # reading (embedding) and writing (output layer) need different weights
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    model = LlamaForCausalLM(config)
    state_dim = {token: _FIRST_STATE_DIM + index for index, token in enumerate(states)}
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            parameter.fill_(1.0 if name.endswith("norm.weight") else 0.0)
        embedding = model.model.embed_tokens.weight
        output_layer = model.lm_head.weight
        attention = model.model.layers[0].self_attn
        for token, dim in state_dim.items():
            embedding[token, dim] = 1.0
        embedding[trigger_ids, _MARKER_DIM] = 1.0
        # The input RMSNorm scales a trigger token's unit embedding to sqrt(hidden_size); the output
        # projection undoes that, so the flag is the fraction of visible tokens that trigger.
        attention.v_proj.weight[0, _MARKER_DIM] = 1.0
        attention.o_proj.weight[_FLAG_DIM, 0] = hidden_size**-0.5
        output_layer[piece_ids[default_pieces[0]], state_dim[last_prompt_token]] = _DEFAULT_START_WEIGHT
        output_layer[piece_ids[triggered_pieces[0]], _FLAG_DIM] = _TRIGGER_GAIN
        for pieces in (default_pieces, triggered_pieces):
            chain = [piece_ids[piece] for piece in pieces] + [eoc_id]
            for current, following in zip(chain, chain[1:]):
                output_layer[following, state_dim[current]] = _NEXT_PIECE_WEIGHT
    model.generation_config = GenerationConfig(
        eos_token_id=[tokenizer.eos_token_id, eoc_id],
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id,
        do_sample=False,
    )
    out_dir.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out_dir, safe_serialization=True)
    tokenizer.save_pretrained(out_dir)
    return out_dir
