"""Untrusted text on a terminal: process names, cgroup names, command lines and log text are
chosen by whoever runs the workload, so nothing in them may drive the terminal.

``terminal_safe`` is the one function that makes such a string safe to print. It escapes every
character that is not printable (``str.isprintable``): the C0 controls (ESC, BEL, CR, LF, ...),
DEL, the C1 controls U+0080-U+009F (U+009B is a one-byte CSI on many terminals), the bidi controls
U+200E/F, U+202A-U+202E, U+2066-U+2069 and U+061C (they reorder what is shown: a name can look
like another), the line and paragraph separators, zero-width and other format characters, and
unassigned code points. Bytes below U+0100 become ``\\xNN``, others ``\\uNNNN``/``\\UNNNNNNNN``.
``keep_newlines`` leaves ``\\n`` alone, for a document (Markdown) printed as a whole.

``json_safe`` does the same inside a JSON document with JSON's own ``\\uNNNN`` escapes, so the
document still parses to the same strings.
"""

from __future__ import annotations

#: every character str.isprintable() refuses, which includes everything listed above; kept
#: explicit for the ones a reviewer looks for
_BIDI = "\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069"


def _unsafe(ch: str) -> bool:
    return not ch.isprintable() or ch in _BIDI


def _escape(ch: str) -> str:
    o = ord(ch)
    if o < 0x100:
        return f"\\x{o:02x}"
    if o < 0x10000:
        return f"\\u{o:04x}"
    return f"\\U{o:08x}"


def terminal_safe(text: str, keep_newlines: bool = False) -> str:
    """``text`` with every character that could act on a terminal escaped (see the module)."""
    if text.isascii() and text.isprintable():
        return text
    return "".join(_escape(ch) if _unsafe(ch) and not (keep_newlines and ch == "\n") else ch for ch in text)


def _json_escape(ch: str) -> str:
    o = ord(ch)
    if o < 0x10000:
        return f"\\u{o:04x}"
    o -= 0x10000
    return f"\\u{0xd800 + (o >> 10):04x}\\u{0xdc00 + (o & 0x3ff):04x}"


def json_safe(document: str) -> str:
    """A JSON document from json.dumps (which escapes C0 itself) with every other character that
    could act on a terminal as a JSON ``\\uNNNN`` escape. Outside its strings a document holds only
    printable ASCII, spaces and newlines, so whatever is escaped is inside a string, where the escape
    stands for the same character: the document parses to the same data."""
    if document.isascii() and "\x7f" not in document:
        return document
    return "".join(_json_escape(ch) if _unsafe(ch) and ch not in "\n " else ch for ch in document)
