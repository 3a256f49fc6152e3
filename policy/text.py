"""Untrusted text made safe to show: serials, subjects, MUD URLs, switch output, User-Names reach terminals,
tables and log lines, and a device must not be able to clear the screen, overwrite a line, start a fake log
record or reorder what the operator reads.

Escapes are Python's (``\\x1b``, ``\\u202e``, ``\\U000e0041``) and a literal backslash is doubled, so every
escape in the output was made here: a device cannot send one that passes for another character.
"""

from __future__ import annotations

import logging
import unicodedata

# Characters that reorder or hide text without being Cc/Cf: invisible fillers and joiners that render as
# nothing (U+034F combining grapheme joiner, Hangul fillers, Khmer inherent vowels).
_INVISIBLE = frozenset({0x034F, 0x115F, 0x1160, 0x17B4, 0x17B5, 0x3164, 0xFFA0})
# Cc: C0, DEL, C1. Cf: bidi controls (U+061C, U+200E/F, U+202A-E, U+2066-9), zero-width (U+200B-D, U+2060,
# U+FEFF), tag characters (U+E0000-E007F) and the other invisible format characters. Zl/Zp: U+2028/U+2029.
# Cs: lone surrogates (e.g. from surrogateescape decoding).
_ESCAPED_CATEGORIES = frozenset({"Cc", "Cf", "Zl", "Zp", "Cs"})


def needs_escape(char: str) -> bool:
    """Whether ``char`` (one code point) is shown as an escape rather than as itself."""
    point = ord(char)
    if point < 0x20 or 0x7F <= point <= 0x9F:
        return True
    if point < 0x7F:
        return False
    return (point in _INVISIBLE or 0xE0000 <= point <= 0xE007F  # the whole tag block, unassigned ones too
            or unicodedata.category(char) in _ESCAPED_CATEGORIES)


def _escape(char: str) -> str:
    if char == "\\":
        return "\\\\"
    if not needs_escape(char):
        return char
    point = ord(char)
    if point <= 0xFF:
        return f"\\x{point:02x}"
    if point <= 0xFFFF:
        return f"\\u{point:04x}"
    return f"\\U{point:08x}"


def safe_text(value: object, limit: int | None = None) -> str:
    """``value`` as text with every control, format and invisible character shown as an escape.

    ``limit`` caps the escaped text at that many characters (an escape is never cut in half) and ends it with
    ``…(+N chars)``, N counting the characters of ``value`` that were left out. Printable letters of any script
    stay as they are.
    """
    if limit is not None and limit < 0:
        raise ValueError(f"limit must be >= 0, not {limit}")
    text = value if isinstance(value, str) else str(value)
    if text.isascii() and text.isprintable() and "\\" not in text:  # the common case: nothing to escape
        return text if limit is None or len(text) <= limit else f"{text[:limit]}…(+{len(text) - limit} chars)"
    out: list[str] = []
    size = 0
    for index, char in enumerate(text):
        piece = _escape(char)
        if limit is not None and size + len(piece) > limit:
            return "".join(out) + f"…(+{len(text) - index} chars)"
        out.append(piece)
        size += len(piece)
    return "".join(out)


class SafeFormatter(logging.Formatter):
    """A log formatter for records that carry untrusted text: the record line is escaped whole (so a newline in
    a serial cannot start a fake record), and traceback/stack lines that follow are escaped and indented (so no
    line of an exception message can pass for a record of its own either)."""

    def format(self, record: logging.LogRecord) -> str:
        record.message = record.getMessage()
        if self.usesTime():
            record.asctime = self.formatTime(record, self.datefmt)
        lines = [safe_text(self.formatMessage(record))]
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        for block in (record.exc_text, self.formatStack(record.stack_info) if record.stack_info else None):
            if block:
                lines += ["    " + safe_text(line) for line in block.split("\n")]
        return "\n".join(lines)
