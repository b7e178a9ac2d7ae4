"""Grounded amounts: a volume, duration, temperature, speed, count or tip size is one the text states for it.

After canonicalization (`pipelines.data.canonicalize`) every amount a description states carries its unit:
"150ul", "300s", "37°C", "750rpm", "5次" / "3 times". A small model's commonest value error is an amount in the
wrong field: `Mix` with vols [15] and times 50 for "mix 15 times at 500ul", `Shake` at 180 rpm for "180s at
1200rpm", or a second `GetDiti` that takes the first one's tips again (docs/results.md). So while a row writes
one of these fields, the greedy processor (`pipelines.serve.constrained`) keeps the value the start of one the
text states for that field, and lets it end only on one (`AmountRow`):

- `vols`, `seconds`, `temperature`, `rpm`, `times`: a number the text writes with that field's unit. A list
  shares the unit written after its last number ("依次175、180、75ul", "80/30ul", "3, 0.5, 1 and 7.5ul").
- `ditiType`: the tip size written just before the command's own word for tips ("取1000ul枪头", "take new
  200ul tips"). Each word for tips is one GetDiti or DropDiti, in order (`pipelines.serve.coverage`), so the
  k-th tip command of the plan reads the k-th word.
- `channels`: numbers the text states, in rising order (canonicalization writes every range and count of
  channels out: "通道1-4" -> "通道1,2,3,4"), so a list cannot run on past the channels the text names.

A field the text states nothing for is left to the model. Both rules hold for every gold plan of the generated
corpus, the held-out families and the public examples (`tests/pipelines/serve/test_amount_grounding.py`).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence

from data_contracts.catalog import CHANNEL_MAX
from pipelines.model.plan_layout import KEY_SEPARATOR
from pipelines.serve.coverage import stated_values, tip_steps
from pipelines.serve.stated_amounts import AMOUNT_FIELDS, stated_numbers_by_field, tip_sizes

TIP_SIZE_FIELD = "ditiType"
CHANNELS_FIELD = "channels"
GROUNDED_AMOUNT_FIELDS = (*AMOUNT_FIELDS, TIP_SIZE_FIELD, CHANNELS_FIELD)
# Where a grounded value opens in the model's layout: `"times":` before a number, `"vols":[` before a list,
# `"ditiType":"` before a string.
_VALUE_OPENER = re.compile(
    rb'"(' + "|".join(GROUNDED_AMOUNT_FIELDS).encode() + rb')"' + re.escape(KEY_SEPARATOR.encode()) + rb'(\[|")?'
)
_CLOSERS = {b"[": (b"]",), b'"': (b'"',), b"": (b",", b"}")}
# Enough bytes for a key and a list of 8 long numbers ("1000.5," x 8).
_LOOKBACK = 160


class AmountRow:
    """One batch row's grounded amounts: what its description states per field, and the bytes generated."""

    __slots__ = ("numbers", "sizes", "channels", "generated")

    def __init__(self, description: str) -> None:
        self.numbers: Mapping[str, frozenset[bytes]] = stated_numbers_by_field(description)
        self.sizes: Sequence[str | None] = tip_sizes(description)
        self.channels = frozenset(
            b"%d" % value for value in stated_values(description)
            if isinstance(value, float) and value.is_integer() and 1 <= value <= CHANNEL_MAX
        )
        self.generated = bytearray()

    def accept_bytes(self, token: bytes) -> None:
        self.generated += token

    def keeps_grounding(self, token: bytes) -> bool:
        """Whether appending `token` keeps the grounded value it writes in (if any) on stated amounts: every
        item it ends is one, and the item still open is the start of one."""
        text = bytes(self.generated[-_LOOKBACK:]) + token
        opener = None
        for opener in _VALUE_OPENER.finditer(text):
            pass
        if opener is None:
            return True
        allowed = self.allowed_for(opener.group(1).decode())
        if allowed is None:
            return True
        kind = opener.group(2) or b""
        value = text[opener.end() :]
        end = min((at for at in map(value.find, _CLOSERS[kind]) if at >= 0), default=None)
        if end is not None and opener.end() + end < len(text) - len(token):
            return True  # closed before this token
        body = value if end is None else value[:end]
        items = body.split(b",") if kind == b"[" else [body]
        ended, open_item = (items, None) if end is not None else (items[:-1], items[-1])
        ended = [item.strip() for item in ended]
        if any(item not in allowed for item in ended):
            return False
        if opener.group(1) == CHANNELS_FIELD.encode():
            if any(int(a) >= int(b) for a, b in zip(ended, ended[1:])):
                return False
            if ended and open_item is not None:  # the channel still open must come after the last one
                allowed = frozenset(item for item in allowed if int(item) > int(ended[-1]))
        return open_item is None or any(item.startswith(open_item.strip()) for item in allowed)

    def allowed_for(self, field: str) -> frozenset[bytes] | None:
        """What the field may hold here; None when the text states nothing for it."""
        if field == CHANNELS_FIELD:
            return self.channels or None
        if field != TIP_SIZE_FIELD:
            return self.numbers.get(field)
        mention = tip_steps(self.generated.decode("utf-8", "replace")) - 1  # this GetDiti's word for tips
        size = self.sizes[mention] if 0 <= mention < len(self.sizes) else None
        return None if size is None else frozenset({size.encode()})
