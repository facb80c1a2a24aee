"""Text that a model, a tool or a user wrote, made safe to print on a terminal.

A model chooses its text, its tool names and (through the tools) their output, and
a terminal obeys control sequences wherever they come from: `ESC]0;...` retitles the
window, `ESC]52;c;...` sets the clipboard (a paste later runs the attacker's command),
`ESC[2J` clears the screen, `ESC[8m` hides what follows, a carriage return or a newline
in a tool's name forges a line of the CLI's own. So every CLI printer passes such text
through here, and only the CLI's own styling (click.style, the renderer's erase) adds
escape sequences after it.

Escaped, as visible `\\xNN` / `\\uNNNN` text: C0 controls (ESC, CR, BEL, backspace,
...), DEL, C1 controls (U+0080-U+009F: 8-bit CSI and OSC, which some terminals obey),
and the bidirectional overrides and isolates that reorder what a line appears to say.
`body_text` keeps newlines and tabs (paragraphs, tool output); `line_text` escapes them
too, for fields that must stay on one line (names, ids).
"""

from __future__ import annotations

import re

_BIDI = (*range(0x202A, 0x202F), *range(0x2066, 0x206A), 0x200E, 0x200F, 0x061C)
_CONTROLS = (*range(0x00, 0x20), 0x7F, *range(0x80, 0xA0), *_BIDI)


def _escape(code: int) -> str:
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


_LINE = str.maketrans({code: _escape(code) for code in _CONTROLS})
_BODY = str.maketrans({code: _escape(code) for code in _CONTROLS if chr(code) not in "\n\t"})
# In JSON text, the controls that JSON itself leaves raw (DEL, C1, bidi) as \u escapes:
# C0 controls are always escaped by a JSON encoder, and nothing outside a string is.
_JSON_RAW = re.compile("[\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]")


def body_text(text: str) -> str:
    """`text` with every control character escaped except newlines and tabs."""
    return text.translate(_BODY)


def line_text(text: str) -> str:
    """`text` on one line: every control character escaped, newlines and tabs too."""
    return text.translate(_LINE)


def json_text(text: str) -> str:
    """JSON text (a `--json` line) with DEL, C1 and bidi controls as `\\uNNNN` escapes:
    still the same JSON, and nothing a terminal would obey."""
    return _JSON_RAW.sub(lambda found: f"\\u{ord(found.group()):04x}", text)
