"""A corpus file where every line is hostile, each with the quarantine reason it must get.

Kept as a builder (not a checked-in file) because some lines are megabytes long or not UTF-8.
"""

from __future__ import annotations

import json
from dataclasses import dataclass


@dataclass(frozen=True)
class HostileLine:
    name: str
    data: bytes
    reasons: tuple[str, ...]  # any of these is the right reason


def _record(input_text: str, output_text: str) -> bytes:
    return json.dumps({"conversation": [{"input": input_text, "output": output_text}]}, ensure_ascii=False).encode()


def _aspirate(labware: str = "'Plate1'", vols: str = "[20]", channels: str = "[1]") -> str:
    return f"Aspirate(channels={channels}, labware={labware}, wells=['A1'], vols={vols})"


def hostile_lines(pwned_marker: str, max_line_bytes: int) -> list[HostileLine]:
    """`pwned_marker` is a file path that exists only if something evaluated a line."""
    payload = f"__import__('os').system('touch {pwned_marker}')"
    lines = [
        HostileLine("huge_line", _record("吸取" * (max_line_bytes // 3), _aspirate()), ("line_too_long",)),
        HostileLine(
            "huge_line_no_newline_json", b'{"conversation": "' + b"x" * (3 * max_line_bytes), ("line_too_long",)
        ),
        HostileLine("deep_json", b'{"conversation": ' + b"[" * 200_000 + b"]" * 200_000 + b"}", ("invalid_json",)),
        HostileLine("deep_json_unclosed", b"[" * 500_000, ("invalid_json",)),
        HostileLine(
            "deep_json_in_turn",
            _record("x", "y")[:-3] + b', "extra": ' + b'{"a":' * 50_000 + b"1" + b"}" * 50_000 + b"}]}",
            ("invalid_json", "wrong_shape"),
        ),
        HostileLine(
            "not_utf8",
            b'{"conversation": [{"input": "\xff\xfe\xc3\x28", "output": "Delay(seconds=1)"}]}',
            ("invalid_utf8",),
        ),
        HostileLine(
            "latin1",
            '{"conversation": [{"input": "Pipettieren 20 µl", "output": "Delay(seconds=1)"}]}'.encode("latin-1"),
            ("invalid_utf8",),
        ),
        HostileLine(
            "lone_surrogate_escape",
            b'{"conversation": [{"input": "\\ud800 wait 1 s", "output": "Delay(seconds=1)"}]}',
            ("invalid_unicode", "invalid_utf8"),
        ),
        HostileLine(
            "nul_bytes",
            b'{"conversation": [{"input": "wait\x00", "output": "Delay(seconds=1)"}]}',
            ("invalid_json",),
        ),
        HostileLine("code_as_output", _record("run it", payload), ("unparseable_command",)),
        HostileLine("code_as_parameter", _record("aspirate", _aspirate(labware=payload)), ("unparseable_command",)),
        HostileLine(
            "code_as_command_line",
            _record("mix", f"GetDiti(ditiType='50ul', channels=[1])\n{payload}"),
            ("unparseable_command",),
        ),
        HostileLine("code_in_list", _record("aspirate", _aspirate(vols=f"[{payload}]")), ("unparseable_command",)),
        HostileLine("lambda_call", _record("aspirate", f"(lambda: {payload})()"), ("unparseable_command",)),
        HostileLine("nan_volume_name", _record("aspirate nan", _aspirate(vols="[nan]")), ("unparseable_command",)),
        HostileLine(
            "nan_volume_call", _record("aspirate nan", _aspirate(vols="[float('nan')]")), ("unparseable_command",)
        ),
        HostileLine("infinite_volume", _record("aspirate inf", _aspirate(vols="[1e999]")), ("unparseable_command",)),
        HostileLine(
            "negative_infinite_volume", _record("aspirate -inf", _aspirate(vols="[-1e999]")), ("unparseable_command",)
        ),
        HostileLine(
            "json_nan_volume",
            b'{"conversation": [{"input": "aspirate", '
            b'"output": "Aspirate(channels=[1], labware=\'P\', wells=[\'A1\'], vols=[20])"}], "vols": NaN}',
            ("invalid_json", "wrong_shape"),
        ),
        HostileLine(
            "json_infinity_as_output",
            b'{"conversation": [{"input": "aspirate", "output": Infinity}]}',
            ("invalid_json", "wrong_shape"),
        ),
        HostileLine(
            "negative_channel",
            _record("aspirate on channel -1", _aspirate(channels="[-1]")),
            ("catalog_channel_range",),
        ),
        HostileLine(
            "zero_channel", _record("aspirate on channel 0", _aspirate(channels="[0]")), ("catalog_channel_range",)
        ),
        HostileLine(
            "labware_with_newline_escape",
            _record("aspirate from Plate 1", _aspirate(labware="'Plate\\n1'")),
            ("catalog_invalid_label", "unparseable_command"),
        ),
        HostileLine(
            "labware_with_raw_newline",
            _record("aspirate from Plate 1", _aspirate(labware="'Plate\n1'")),
            ("unparseable_command",),
        ),
        HostileLine(
            "labware_with_quotes",
            _record('aspirate from Plate"1', _aspirate(labware="'Plate\"1\\''")),
            ("catalog_invalid_label", "unparseable_command"),
        ),
        HostileLine(
            "labware_unbalanced_quote",
            _record("aspirate from Plate1", _aspirate(labware="'Plate1")),
            ("unparseable_command",),
        ),
        HostileLine(
            "labware_with_carriage_return",
            _record("aspirate from Plate1", _aspirate(labware="'Pla\\rte1'")),
            ("catalog_invalid_label", "unparseable_command"),
        ),
        HostileLine("top_level_list", b"[1, 2, 3]", ("wrong_shape",)),
        HostileLine("blank", b"   ", ("blank_line",)),
    ]
    return lines


def corpus_bytes(lines: list[HostileLine]) -> bytes:
    return b"\n".join(line.data for line in lines) + b"\n"
