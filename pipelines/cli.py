"""`python -m pipelines <command>`: the command line over the pipeline stages.

Each sub-command lives in its own module exposing `add_arguments(parser)` and `run(args) -> int`.
Those modules keep heavy imports (torch, transformers, deltalake) inside `run`, so `--help` stays fast.
"""

from __future__ import annotations

import argparse
import importlib
import sys

COMMANDS: dict[str, tuple[str, str]] = {
    "generate-corpus": ("pipelines.corpus.cli", "write the bundled seed corpus (fixed seed)"),
    "stage": ("pipelines.data.stages", "run one data stage (raw | normalize | augment), as DVC does"),
    "predict": ("pipelines.serve.predict", "turn descriptions into catalog-valid commands with a trained model"),
    "serve": (
        "pipelines.serve.server",
        "serve the deployed model over HTTP (POST /v1/plans), with the same gate as predict",
    ),
    "lineage": ("pipelines.lineage.audit", "print and verify the data lineage of a model directory"),
    "deploy": (
        "pipelines.serve.deploy",
        "show promoted models and roll deploy/current back (status | list | rollback)",
    ),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m pipelines", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    for name, (module_name, help_text) in COMMANDS.items():
        command_parser = sub.add_parser(name, help=help_text)
        command_parser.set_defaults(_module=module_name)
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as error:
            if error.name != module_name:
                raise
            continue
        module.add_arguments(command_parser)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    module = importlib.import_module(args._module)
    return int(module.run(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
