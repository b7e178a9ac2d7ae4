"""The public examples stay a test: no input of data/eval/sop_examples.jsonl, nor a near copy of one,
is in the generated training corpus or the held-out phrasing-family file.

A near copy: difflib similarity ratio >= 0.9 between the folded texts (as written, or as the model sees them
after normalization), or a shared run of 30 characters of the written texts (three quarters of a shorter
example). This detector is written here independently of the generator's own guard.
"""

from __future__ import annotations

import difflib
import json
import math
import unicodedata
from pathlib import Path

import pytest
import yaml

from pipelines.cli import main as cli_main
from pipelines.corpus.near_copy import NearCopyGuard
from pipelines.data.normalize import normalize_text, split_line_prefix

REPO_ROOT = Path(__file__).resolve().parents[3]
EXAMPLES = REPO_ROOT / "data" / "eval" / "sop_examples.jsonl"
RATIO = 0.9
LONG_RUN = 30
SHORT_EXAMPLE_SHARE = 0.75


def inputs_of(path: Path) -> list[str]:
    return [json.loads(line)["conversation"][0]["input"] for line in path.read_text(encoding="utf-8").splitlines()]


def folded(text: str) -> str:
    lines = (split_line_prefix(" ".join(unicodedata.normalize("NFKC", line).split()))[1] for line in text.splitlines())
    return "".join("".join(lines).casefold().split()).rstrip("。.")


class Detector:
    def __init__(self, examples: list[str]) -> None:
        self.examples = examples
        self.written = [folded(text) for text in examples]
        self.normalized = [folded(normalize_text(text)) for text in examples]
        self.matchers = [
            difflib.SequenceMatcher(None, "", example, autojunk=False) for example in self.written + self.normalized
        ]
        self.runs: dict[int, dict[str, int]] = {}
        for number, example in enumerate(self.written):
            run = min(LONG_RUN, math.ceil(SHORT_EXAMPLE_SHARE * len(example)))
            pieces = self.runs.setdefault(run, {})
            for start in range(len(example) - run + 1):
                pieces.setdefault(example[start : start + run], number)

    def copied_example(self, text: str) -> str | None:
        """The public example `text` copies or nearly copies, if any."""
        written, normalized = folded(text), folded(normalize_text(text))
        for run, pieces in self.runs.items():
            for start in range(len(written) - run + 1):
                if written[start : start + run] in pieces:
                    return self.examples[pieces[written[start : start + run]]]
        for number, matcher in enumerate(self.matchers):
            for view in (written, normalized):
                matcher.set_seq1(view)
                if matcher.real_quick_ratio() >= RATIO and matcher.quick_ratio() >= RATIO and matcher.ratio() >= RATIO:
                    return self.examples[number % len(self.examples)]
        return None


@pytest.fixture(scope="module")
def examples() -> list[str]:
    texts = inputs_of(EXAMPLES)
    assert len(texts) == 20
    return texts


@pytest.fixture(scope="module")
def detector(examples) -> Detector:
    return Detector(examples)


@pytest.fixture(scope="module")
def generated_inputs(tmp_path_factory: pytest.TempPathFactory) -> list[str]:
    """Both files exactly as `generate-corpus` writes them from the bundled params."""
    directory = tmp_path_factory.mktemp("generated")
    sections = yaml.safe_load((REPO_ROOT / "params.yaml").read_text(encoding="utf-8"))
    corpus = sections["corpus"]
    assert (REPO_ROOT / corpus["public_examples"]).resolve() == EXAMPLES.resolve()  # the guard protects these
    corpus |= {
        "output": str(directory / "training.jsonl"),
        "heldout_output": str(directory / "heldout.jsonl"),
        "public_examples": str(EXAMPLES),
    }
    params = directory / "params.yaml"
    params.write_text(yaml.safe_dump(sections, allow_unicode=True), encoding="utf-8")
    assert cli_main(["generate-corpus", "--params", str(params)]) == 0
    texts = inputs_of(directory / "training.jsonl") + inputs_of(directory / "heldout.jsonl")
    assert len(texts) == corpus["n_records"] + corpus["heldout_records"]
    return texts


def test_the_detector_catches_copies_and_near_copies(detector, examples):
    for example in examples:
        assert detector.copied_example(example) == example
    # A number changed, a prefix added, a copy inside a longer record, a copy in full-width punctuation.
    assert detector.copied_example("通道2与通道5卸下吸头") is not None
    assert detector.copied_example("Step 9: Mount 200 uL tips on channels 1-4.") is not None
    assert detector.copied_example("通道1-4取50 µl吸头，然后通道3与通道5卸下吸头") is not None
    assert detector.copied_example(examples[0].replace("，", ",")) == examples[0]
    assert detector.copied_example("Wait 30 s.") is None
    assert detector.copied_example("行2：通道1-8在母板A3-H3吸取15微升") is None


def test_no_public_example_or_near_copy_is_generated(detector, generated_inputs):
    copies = [(text, example) for text in generated_inputs if (example := detector.copied_example(text))]
    assert not copies, copies[:5]


def test_the_generator_guard_rejects_what_this_detector_rejects(examples, detector):
    # The generator's guard is what keeps the corpus clean for any seed, not only for the bundled one.
    guard = NearCopyGuard(examples)
    planted = [
        *examples,
        "通道2与通道5卸下吸头",
        "Step 9: Mount 200 uL tips on channels 1-4.",
        "通道1-4取50 µl吸头，然后通道3与通道5卸下吸头",
    ]
    for text in planted:
        assert detector.copied_example(text) is not None
        assert guard.is_near_copy(text), text
    assert not guard.is_near_copy("Wait 30 s.")
