"""`python -m pipelines generate-corpus`: write the bundled corpus and its held-out cases from params.yaml.

Both files are written only when their content changes; a file with other content (another seed, size or
a hand-made corpus) is overwritten only with `--force`.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path

from pipelines.config import CorpusParams, load_params
from pipelines.corpus.generator import (
    corpus_bytes,
    generate_heldout_records,
    generate_records,
    heldout_cases,
    write_corpus,
)
from pipelines.corpus.near_copy import read_protected_texts


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--params", default="params.yaml", help="params file with a corpus: section (default: %(default)s)"
    )
    parser.add_argument("--output", default=None, help="JSONL file to write (default: corpus.output from params)")
    parser.add_argument(
        "--heldout-output", default=None, help="held-out phrasing-family cases (default: corpus.heldout_output)"
    )
    parser.add_argument("--n-records", type=int, default=None, help="number of records (default: corpus.n_records)")
    parser.add_argument(
        "--heldout-records", type=int, default=None, help="number of held-out cases (default: corpus.heldout_records)"
    )
    parser.add_argument("--seed", type=int, default=None, help="random seed (default: corpus.seed)")
    parser.add_argument("--force", action="store_true", help="overwrite an existing file whose content differs")


def _resolve(args: argparse.Namespace) -> CorpusParams:
    settings = load_params(args.params).corpus
    chosen = {
        "output": args.output,
        "heldout_output": args.heldout_output,
        "n_records": args.n_records,
        "heldout_records": args.heldout_records,
        "seed": args.seed,
    }
    return dataclasses.replace(settings, **{key: value for key, value in chosen.items() if value is not None})


def run(args: argparse.Namespace) -> int:
    settings = _resolve(args)
    protected = read_protected_texts(settings.public_examples) if settings.public_examples else []
    training = generate_records(settings.n_records, settings.seed, protected)
    heldout = generate_heldout_records(settings.heldout_records, settings.seed, protected)
    outputs = [
        (Path(settings.output), [record.to_raw() for record in training]),
        (Path(settings.heldout_output), heldout_cases(heldout)),
    ]
    for output, records in outputs:
        if output.is_file() and output.read_bytes() != corpus_bytes(records) and not args.force:
            print(
                f"error: {output} exists with different content (another seed, size or a hand-made corpus); "
                "pass --force to overwrite it",
                file=sys.stderr,
            )
            return 1
    for output, records in outputs:
        unchanged = output.is_file() and output.read_bytes() == corpus_bytes(records)
        digest = write_corpus(records, output)
        state = "unchanged" if unchanged else "written"
        print(f"{output}: {len(records)} records, seed {settings.seed}, sha256 {digest} ({state})")
    return 0
