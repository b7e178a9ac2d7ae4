"""Grounded decoding: labels copy text from the description, as the catalog says, while the model writes them.

The catalog copies labels (labware, srcLabware, dstLabware, program, position, liquidClass) "exactly as
written in the description", which no schema can say: the allowed strings differ per description. Rather
than compiling a grammar per description (costlier than decoding it), the greedy processor
(`pipelines.serve.constrained`) checks each row's open label itself, on bytes (a CJK character spans
several tokens): while a row is inside such a value, it picks the highest-scoring token the grammar allows
whose bytes keep the value a substring of that row's description, or close it (the token holds the
closing quote and the value is a non-empty substring that does not stop inside an ASCII name:
`closes_label`). The tokens that can continue a partial value are looked up from the description's text
(`GroundingVocab`, built once per tokenizer), not found by walking the vocabulary, so the pick is exact and
each step costs a few dictionary lookups; per description there is nothing to prepare but its UTF-8
bytes (`GroundedRow`). Well names can be grounded too (off by default: a range "A1-D1" names wells the
text never spells out, B1 and C1).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from data_contracts.validation import grounded_label_fields
from pipelines.model.plan_layout import ITEM_SEPARATOR, key_opener, string_opener

# Lists of well names, whose elements grounded decoding can restrict to the description's text on request.
WELL_LISTS = ("wells", "srcWells", "dstWells")
_QUOTE = b'"'
_NEXT_STRING_ITEM = b'"' + ITEM_SEPARATOR.encode() + b'"'  # `","`: a list's next string opens
ASCII_WORD = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_")
# A well name right after a label ("样品板A1-D1", "PlateB3") ends the label; other letters and digits extend it.
_WELL_AHEAD = re.compile(rb"[A-H](?:1[0-2]|[1-9])(?![0-9])")


def label_may_end_at(description: bytes, end: int) -> bool:
    """Whether a label copied from `description` may stop at byte `end`: not inside an ASCII name.

    A label is the whole name as written, so "反应板" out of "反应板A，" or "Plate_B" out of "Plate_B2"
    is a truncation, a slip small models make. Only ASCII names are bounded: Chinese text runs labels
    into the words around them without a separator, a number may follow a Chinese name ("细胞板37°C")
    and a well name may follow any label ("样品板A1-D1").
    """
    if end >= len(description) or description[end] not in ASCII_WORD:
        return True
    after_chinese_name = description[end - 1] >= 0x80 and description[end : end + 1].isdigit()
    return after_chinese_name or bool(_WELL_AHEAD.match(description, end))


def closes_label(description: bytes, value: bytes, start: int = 0, end: int | None = None) -> bool:
    """Whether `value` is a complete label of `description` (copied from within [start, end) when given):
    non-empty, copied, ending where a name may end."""
    end = len(description) if end is None else end
    at = description.find(value, start, end) if value else -1
    while at >= 0:
        if label_may_end_at(description, at + len(value)):
            return True
        at = description.find(value, at + 1, end)
    return False


@dataclass(frozen=True)
class GroundedFields:
    """Where grounded values open in the model's layout: `"labware":"` for a label, `["` / `","` in a well list."""

    label_openers: tuple[bytes, ...]  # `"labware":"` and the like: the value starts right after
    list_keys: tuple[bytes, ...]  # `"wells":` and the like: every element of the list that follows is grounded

    @classmethod
    def for_catalog(cls, grounded_wells: bool = False) -> GroundedFields:
        labels = tuple(string_opener(name) for name in grounded_label_fields())
        lists = tuple(key_opener(name) for name in WELL_LISTS) if grounded_wells else ()
        return cls(label_openers=labels, list_keys=lists)


@dataclass(frozen=True)
class GroundingVocab:
    """A tokenizer's tokens as bytes, indexed for looking up the tokens that continue a string."""

    token_bytes: tuple[bytes, ...]
    plain_ids: dict[bytes, tuple[int, ...]]  # tokens without a quote, by their bytes
    quoted_ids: dict[bytes, tuple[int, ...]]  # tokens with a quote, by the bytes before their first quote
    prefixes: frozenset[bytes]  # every non-empty prefix of those keys: a lookup stops at the first miss
    longest_key: int  # no key is longer: the most description bytes one lookup needs

    @classmethod
    def build(cls, decoded_vocab: Sequence[bytes], excluded_ids: Iterable[int] = ()) -> GroundingVocab:
        excluded = set(excluded_ids)
        plain: dict[bytes, list[int]] = {}
        quoted: dict[bytes, list[int]] = {}
        for token_id, token in enumerate(decoded_vocab):
            if not token or token_id in excluded:
                continue
            quote_at = token.find(_QUOTE)
            if quote_at < 0:
                plain.setdefault(token, []).append(token_id)
            else:
                quoted.setdefault(token[:quote_at], []).append(token_id)
        prefixes = {key[:end] for key in (*plain, *quoted) for end in range(1, len(key) + 1)}
        return cls(
            token_bytes=tuple(decoded_vocab),
            plain_ids={key: tuple(ids) for key, ids in plain.items()},
            quoted_ids={key: tuple(ids) for key, ids in quoted.items()},
            prefixes=frozenset(prefixes),
            longest_key=max((len(key) for key in (*plain, *quoted)), default=0),
        )


class GroundedRow:
    """One batch row's grounding: its description's bytes, the bytes generated so far, the value open now.

    `partial` is the open grounded value's bytes (b"" right after its opening quote), None outside one.
    The description is searched as bytes: a valid UTF-8 string that is a byte substring of valid UTF-8 is
    also a character substring, and the grammar only lets valid UTF-8 close a string.
    """

    __slots__ = ("description", "vocab", "fields", "generated", "partial", "_continuations")

    def __init__(self, description: bytes, vocab: GroundingVocab, fields: GroundedFields) -> None:
        self.description = description
        self.vocab = vocab
        self.fields = fields
        self.generated = bytearray()
        self.partial: bytes | None = None
        self._continuations: dict[bytes, Any] = {}  # partial value -> candidate token ids

    def _bytes_of(self, token_id: int) -> bytes:
        return self.vocab.token_bytes[token_id] if token_id < len(self.vocab.token_bytes) else b""

    def accept(self, token_id: int) -> None:
        self.accept_bytes(self._bytes_of(token_id))

    def keeps_grounding(self, token_id: int) -> bool:
        return self.token_keeps_grounding(self._bytes_of(token_id))

    def accept_bytes(self, token: bytes) -> None:
        """Follow a generated token: the open value grows, closes, or one opens at its last quote."""
        self.generated += token
        if _QUOTE in token:
            quote_at = self.generated.rfind(_QUOTE)
            opens = self._opens_value(self.generated, quote_at)
            self.partial = bytes(self.generated[quote_at + 1 :]) if opens else None
        elif self.partial is not None:
            self.partial += token

    def _opens_value(self, text: bytes | bytearray, quote_at: int) -> bool:
        """Whether the quote at `quote_at` opens a grounded value (labels and well names hold no quotes)."""
        end = quote_at + 1
        if text.endswith(self.fields.label_openers, 0, end):
            return True
        if not self.fields.list_keys or not text.endswith((b'["', _NEXT_STRING_ITEM), 0, end):
            return False
        bracket = text.rfind(b"[", 0, quote_at)
        inside_list = bracket >= 0 and text.find(b"]", bracket, quote_at) < 0
        return inside_list and text.endswith(self.fields.list_keys, 0, bracket)

    def token_keeps_grounding(self, token: bytes) -> bool:
        """Whether appending the token leaves every grounded value it touches a substring of the description.

        A closed value must also be non-empty; a token can close the open value and open (and even
        close) further ones, so each quote in it is followed.
        """
        pieces = token.split(_QUOTE)
        if self.partial is not None:
            value = self.partial + pieces[0]
            if len(pieces) == 1:
                return value in self.description
            if not closes_label(self.description, value):
                return False
        elif len(pieces) == 1:
            return True
        text = self.generated + token
        quote_at = len(self.generated) + len(pieces[0])
        for index, content in enumerate(pieces[1:], start=1):
            closed = index < len(pieces) - 1
            grounded = closes_label(self.description, content) if closed else content in self.description
            if self._opens_value(text, quote_at) and not grounded:
                return False
            quote_at += 1 + len(content)
        return True

    def continuations(self) -> Any:
        """Ids of the tokens that keep the open value grounded, ascending: the bytes that follow `partial`
        at each place it occurs in the description, cut at token lengths, plus the tokens that close the
        value there. Cached per partial value: a row often writes the same label more than once."""
        import torch

        partial = self.partial or b""
        cached = self._continuations.get(partial)
        if cached is not None:
            return cached
        vocab, description = self.vocab, self.description
        ids: set[int] = set()
        start = description.find(partial)
        while start >= 0:
            value_end = start + len(partial)
            if partial and label_may_end_at(description, value_end):  # the value may close right here
                ids.update(vocab.quoted_ids.get(b"", ()))
            rest = description[value_end : value_end + vocab.longest_key]
            for end in range(1, len(rest) + 1):
                head = rest[:end]
                if head not in vocab.prefixes:
                    break
                ids.update(vocab.plain_ids.get(head, ()))
                if label_may_end_at(description, value_end + end):
                    ids.update(vocab.quoted_ids.get(head, ()))
            start = description.find(partial, start + 1)
        candidates = torch.tensor(sorted(ids), dtype=torch.long)
        self._continuations[partial] = candidates
        return candidates
