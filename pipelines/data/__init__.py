"""Data stages: raw JSONL to quarantine, normalized samples, the augmented training set and its split."""
