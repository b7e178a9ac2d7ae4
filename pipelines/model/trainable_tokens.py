"""The trainable `<eoc>` row, applied row by row instead of through a copy of the whole embedding matrix.

peft trains a token's row (`trainable_token_indices`) by copying the vocabulary x hidden matrix with the new row
written in, on every forward of the input embeddings and of the tied output layer. Autograd then computes the
copy's whole gradient: a dense vocabulary-sized gradient for the input embeddings, and the output layer's full
weight gradient (a product over the whole vocabulary for every target token), of which only the trained row is
kept. `apply_trainable_tokens_by_row` gives the model's token layers a forward that computes the same outputs from the
frozen matrix and writes in only the trained rows: the embedding's output where the token is the input, the
logits' column for the token. The loss and the gradients are the same (tests/pipelines/model/test_train_loss_knobs.py);
the adapter's parameters and its saved file are peft's own, so merging and loading are unchanged.
"""

from __future__ import annotations

import types
from typing import Any


def apply_trainable_tokens_by_row(model: Any) -> int:
    """Give each of `model`'s trainable-token layers the row-by-row forward; the number of layers changed."""
    from peft.tuners.trainable_tokens.layer import TrainableTokensLayer

    layers = [module for module in model.modules() if isinstance(module, TrainableTokensLayer)]
    for layer in layers:
        layer.forward_adapters = types.MethodType(forward_by_row, layer)
    return len(layers)


def forward_by_row(layer: Any, x: Any, active_adapters: list[str], *args: Any, **kwargs: Any) -> Any:
    """peft's `TrainableTokensLayer.forward_adapters`, with the trained rows written into the output."""
    import torch
    import torch.nn.functional as F
    from peft.tuners.trainable_tokens.layer import TrainableTokensLayer

    if layer.disable_adapters or not active_adapters or layer.merged:
        return TrainableTokensLayer.forward_adapters(layer, x, active_adapters, *args, **kwargs)
    layer._check_overlapping_tokens(active_adapters)
    base = layer.base_layer
    if isinstance(base, torch.nn.Embedding):
        output = base(x)
        scale = layer._get_embed_scale()
        for name in active_adapters:
            for row, token in zip(layer.trainable_tokens_delta[name], layer.token_indices[name], strict=True):
                embedding = row if scale is None else row * scale
                output = torch.where((x == token)[..., None], embedding.to(output.dtype), output)
        return output
    if isinstance(base, torch.nn.Linear):  # the output layer, tied to the embeddings (peft leaves out its bias too)
        logits = F.linear(x, base.weight)
        for name in active_adapters:
            rows = layer.trainable_tokens_delta[name].to(base.weight.dtype)
            columns = torch.tensor(layer.token_indices[name], device=logits.device)
            # In place: the product's backward needs its inputs, not its output, so no copy of the logits is kept.
            logits.index_copy_(-1, columns, F.linear(x, rows).to(logits.dtype))
        return logits
    return TrainableTokensLayer.forward_adapters(layer, x, active_adapters, *args, **kwargs)
