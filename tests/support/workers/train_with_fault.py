"""Subprocess: the real training entry point, optionally hanging at a chosen moment so the parent can SIGKILL it.

argv: request_json mode step signal_file
  mode "none":        train to the end.
  mode "after_step":  hang right before optimizer step `step`+1, i.e. after checkpoint-`step` is complete.
  mode "in_save":     hang while checkpoint-`step` is on disk but before its completeness marker is written.
The hang writes `signal_file` first, so the parent kills at a known point of training.
"""

import sys
import time
from pathlib import Path

import pipelines.model.trainer as trainer
from pipelines.model import train_entry


def hang(signal_file: Path) -> None:
    signal_file.write_text("hanging")
    time.sleep(3600)


def install_fault(mode: str, step: int, signal_file: Path) -> None:
    original = trainer.trainer_classes

    def patched():
        collator_cls, trainer_cls, completion_cls = original()

        class FaultyCompletion(completion_cls):
            def on_step_begin(self, args, state, control, **kwargs):
                if mode == "after_step" and state.global_step == step:
                    hang(signal_file)
                return super().on_step_begin(args, state, control, **kwargs)

            def on_save(self, args, state, control, **kwargs):
                if mode == "in_save" and state.global_step == step:
                    hang(signal_file)
                return super().on_save(args, state, control, **kwargs)

        return collator_cls, trainer_cls, FaultyCompletion

    trainer.trainer_classes = patched


if __name__ == "__main__":
    request, mode, step, signal_file = sys.argv[1], sys.argv[2], int(sys.argv[3]), Path(sys.argv[4])
    if mode != "none":
        install_fault(mode, step, signal_file)
    sys.exit(train_entry.main(["--request", request]))
