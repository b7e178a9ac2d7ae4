"""The base model, prompts, LoRA training, the merge and the model directory it writes."""
