"""Keep the corpus from copying, or nearly copying, the public test examples' inputs.

A text is a near copy of a protected text when difflib's similarity ratio reaches NEAR_COPY_RATIO, or
when they share a run of LONG_SHARED_RUN characters (or SHORT_TEXT_SHARE of a shorter protected text).
"""

from __future__ import annotations

import difflib
import json
import math
import os
import unicodedata
from collections import Counter
from collections.abc import Callable, Iterable
from pathlib import Path

from pipelines.corpus.phrasings import STEP_PREFIX

NEAR_COPY_RATIO = 0.9
LONG_SHARED_RUN = 30
SHORT_TEXT_SHARE = 0.75


def _folded(text: str) -> str:
    """Text reduced to what a near-copy check should compare: no step prefixes, case, spaces or end marks."""
    text = unicodedata.normalize("NFKC", text).casefold()
    lines = (STEP_PREFIX.sub("", line.strip()) for line in text.splitlines())
    return "".join("".join(lines).split()).rstrip("。.")


class NearCopyGuard:
    """Recognizes texts that copy or nearly copy a protected text (the public test examples' inputs).

    Similarity is judged on the text as written and as the model sees it (pipelines.data.normalize.normalize_text),
    both folded. Shared runs are looked for in the written text only: normalization expands ranges
    ("A10-H10" -> eight wells), so any two 8-channel steps on column 10 would share a long run there.
    """

    def __init__(self, protected_texts: Iterable[str]) -> None:
        from pipelines.data.normalize import normalize_text  # pandas and deltalake: only when a guard is wanted

        protected_texts = list(protected_texts)
        self._normalized_view: Callable[[str], str] = lambda text: _folded(normalize_text(text))
        views = {_folded(text) for text in protected_texts} | {self._normalized_view(text) for text in protected_texts}
        self._similar_to = [(text, Counter(text)) for text in sorted(views - {""})]
        written = sorted({_folded(text) for text in protected_texts} - {""})
        self._runs_of = [(text, _shared_run_limit(text)) for text in written]
        # Every shared run is at least this long; its first characters find where one could start.
        self._seed = min((limit for _, limit in self._runs_of), default=1)
        self._seeds: dict[str, list[tuple[int, int]]] = {}
        for number, (text, _) in enumerate(self._runs_of):
            for start in range(len(text) - self._seed + 1):
                self._seeds.setdefault(text[start : start + self._seed], []).append((number, start))

    def is_near_copy(self, text: str) -> bool:
        written = _folded(text)
        if self._shares_a_long_run(written) or self._is_similar(written):
            return True
        normalized = self._normalized_view(text)
        return normalized != written and self._is_similar(normalized)

    def _shares_a_long_run(self, folded: str) -> bool:
        for start in range(len(folded) - self._seed + 1):
            for number, protected_start in self._seeds.get(folded[start : start + self._seed], ()):
                protected, limit = self._runs_of[number]
                length = self._seed
                while (
                    start + length < len(folded)
                    and protected_start + length < len(protected)
                    and folded[start + length] == protected[protected_start + length]
                ):
                    length += 1
                if length >= limit:
                    return True
        return False

    def _is_similar(self, folded: str) -> bool:
        counts = Counter(folded)
        for protected, protected_counts in self._similar_to:
            total = len(folded) + len(protected)
            # Upper bounds first (length, then shared characters), as difflib's real_quick_ratio and
            # quick_ratio do, so the exact ratio runs only for texts that could reach the threshold.
            if 2 * min(len(folded), len(protected)) < NEAR_COPY_RATIO * total:
                continue
            shared = sum(min(n, protected_counts[char]) for char, n in counts.items())
            if 2 * shared < NEAR_COPY_RATIO * total:
                continue
            if difflib.SequenceMatcher(None, folded, protected, autojunk=False).ratio() >= NEAR_COPY_RATIO:
                return True
        return False


def _shared_run_limit(protected: str) -> int:
    """A shared run this long makes a near copy: LONG_SHARED_RUN, or most of a short protected text."""
    return min(LONG_SHARED_RUN, math.ceil(SHORT_TEXT_SHARE * len(protected)))


def read_protected_texts(path: str | os.PathLike[str]) -> list[str]:
    """The inputs of a file in the raw corpus format (the public test examples)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"corpus.public_examples: {path} does not exist (inputs the corpus must never copy)")
    texts = []
    for line_number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if line.strip():
            try:
                texts.append(str(json.loads(line)["conversation"][0]["input"]))
            except (ValueError, KeyError, IndexError, TypeError) as error:
                raise ValueError(f"{path}:{line_number}: not a raw corpus record ({error})") from error
    return texts
