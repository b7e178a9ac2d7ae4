"""Canonical amounts: every rewrite keeps the meaning (amounts, their order, labels) and is idempotent."""

from __future__ import annotations

import unicodedata

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pipelines.data.canonicalize import canonicalize
from pipelines.data.normalize import normalize_text


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("吸取0.75 mL", "吸取750ul"),
        ("吸0.12毫升", "吸120ul"),
        ("各20 µl", "各20ul"),
        ("分别吸取0.01、0.02毫升", "分别吸取10、20ul"),
        ("channels 1-4, 0.5 ml each", "channels 1,2,3,4, 500ul each"),
        ("计时3小时后继续", "计时10800s后继续"),
        ("at 42 °C for 45 minutes", "at 42°C for 2700s"),
        ("等1分20秒", "等80s"),
        ("hold 1 h 30 min", "hold 5400s"),
        ("静置半小时", "静置1800s"),
        ("一个半小时后", "5400s后"),
        ("三分钟", "180s"),
        ("wait half an hour", "wait 1800s"),
        ("pause for an hour", "pause for 3600s"),
        ("a minute later", "60s later"),
        ("20分后", "1200s后"),
        ("700转每分钟", "700rpm"),
        ("750转/分", "750rpm"),
        ("转速800,振荡", "转速800rpm,振荡"),
        ("55度", "55°C"),
        ("37℃", "37°C"),
        ("A1-D1", "A1,B1,C1,D1"),
        ("A9至H9", "A9,B9,C9,D9,E9,F9,G9,H9"),
        ("A1 to A4", "A1,A2,A3,A4"),
        ("B2-A1", "B2-A1"),
        ("通道1-4", "通道1,2,3,4"),
        ("1至4号通道", "通道1,2,3,4"),
        ("第5到第8通道", "通道5,6,7,8"),
        ("前3个通道", "通道1,2,3"),
        ("八个通道", "通道1,2,3,4,5,6,7,8"),
        ("3号通道", "3号通道"),
        ("H5孔,8通道每孔转移", "H5孔,通道1,2,3,4,5,6,7,8每孔转移"),
        ("通道2,8通道吸取", "通道2,8通道吸取"),
        ("通道3与通道5", "通道3与通道5"),
        ("channels 2 through 4", "channels 2,3,4"),
        ("the first 2 channels", "channels 1,2"),
        ("all eight channels", "channels 1,2,3,4,5,6,7,8"),
        ("every channel", "channels 1,2,3,4,5,6,7,8"),
        ("channels 3 and 6", "channels 3 and 6"),
        ("用20ul分配到板", "用20ul分配到板"),
        (
            "PCR_Plate, Deck_7, Fast_40x, Buffer_5ml, Tube_2h, Rack_A1-D1",
            "PCR_Plate, Deck_7, Fast_40x, Buffer_5ml, Tube_2h, Rack_A1-D1",
        ),
    ],
)
def test_canonical_forms(text: str, expected: str) -> None:
    assert canonicalize(unicodedata.normalize("NFKC", text)) == expected


# --- property: a text built from segments canonicalizes segment by segment ------------------------

LABELS = (
    "样品板", "反应板A", "扩增板C", "PCR_Plate", "Deck_7", "Fast_40x", "Buffer_5ml", "Plate1", "Mag_Station", "Tube_2h"
)
UL_UNITS = ("ul", "uL", "µl", "μL", "µL", "微升", " ul", " µL", " 微升")
ML_UNITS = ("ml", "mL", "毫升", " ml", " mL", " 毫升")
SEPARATORS = ("，然后", "; then ", "、再", "，之后")
ROWS = "ABCDEFGH"


@st.composite
def volume_segment(draw: st.DrawFn) -> tuple[str, str]:
    microlitres = draw(st.integers(min_value=1, max_value=1000))
    if microlitres % 10 == 0 and draw(st.booleans()):
        millilitres = microlitres / 1000
        return f"{millilitres:g}{draw(st.sampled_from(ML_UNITS))}", f"{microlitres}ul"
    return f"{microlitres}{draw(st.sampled_from(UL_UNITS))}", f"{microlitres}ul"


@st.composite
def duration_segment(draw: st.DrawFn) -> tuple[str, str]:
    minutes, seconds = draw(st.integers(0, 90)), draw(st.integers(0, 59))
    hours = draw(st.integers(0, 3))
    total = hours * 3600 + minutes * 60 + seconds
    parts = []
    if hours:
        parts.append(f"{hours}{draw(st.sampled_from(('小时', ' h', ' hours', '个小时')))}")
    if minutes:
        parts.append(f"{minutes}{draw(st.sampled_from(('分钟', ' min', ' minutes')))}")
    if seconds or not parts:
        parts.append(f"{seconds}{draw(st.sampled_from(('秒', ' s', ' seconds', '秒钟')))}")
    return " ".join(parts), f"{total}s"


@st.composite
def channel_segment(draw: st.DrawFn) -> tuple[str, str]:
    first = draw(st.integers(1, 7))
    last = draw(st.integers(first + 1, 8))
    listed = ",".join(str(c) for c in range(first, last + 1))
    forms = ("通道{a}-{b}", "{a}至{b}号通道", "通道{a}到通道{b}", "channels {a}-{b}", "channels {a} to {b}")
    form = draw(st.sampled_from(forms))
    canonical = f"channels {listed}" if form.startswith("channels") else f"通道{listed}"
    return form.format(a=first, b=last), canonical


@st.composite
def wells_segment(draw: st.DrawFn) -> tuple[str, str]:
    column = draw(st.integers(1, 12))
    top = draw(st.integers(0, 6))
    bottom = draw(st.integers(top + 1, 7))
    dash = draw(st.sampled_from(("-", "到", "至", " to ", "~", "–")))
    wells = ",".join(f"{ROWS[r]}{column}" for r in range(top, bottom + 1))
    return f"{ROWS[top]}{column}{dash}{ROWS[bottom]}{column}", wells


label_segment = st.sampled_from(LABELS).map(lambda label: (label, label))
segment = st.one_of(volume_segment(), duration_segment(), channel_segment(), wells_segment(), label_segment)


@settings(max_examples=400, deadline=None)
@given(st.lists(segment, min_size=1, max_size=6), st.sampled_from(SEPARATORS))
def test_every_amount_label_and_order_survives(segments: list[tuple[str, str]], separator: str) -> None:
    raw = separator.join(text for text, _ in segments)
    expected = unicodedata.normalize("NFKC", separator).join(canonical for _, canonical in segments)
    assert canonicalize(unicodedata.normalize("NFKC", raw)) == expected


@settings(max_examples=300, deadline=None)
@given(st.lists(segment, min_size=1, max_size=6), st.sampled_from(SEPARATORS))
def test_canonical_text_is_a_fixed_point(segments: list[tuple[str, str]], separator: str) -> None:
    once = normalize_text(separator.join(text for text, _ in segments))
    assert normalize_text(once) == once
