"""safe_text: what a device can put in a serial, subject or switch reply reaches the operator escaped."""

from __future__ import annotations

import io
import logging

import pytest

from policy.text import SafeFormatter, safe_text

# Code points the brief names: bidi controls, zero-width, line/paragraph separators, BOM.
NAMED = (0x061C, 0x200B, 0x200C, 0x200D, 0x200E, 0x200F, 0x2028, 0x2029, 0x202A, 0x202B, 0x202C, 0x202D, 0x202E,
         0x2060, 0x2066, 0x2067, 0x2068, 0x2069, 0xFEFF)


def forbidden(point: int) -> bool:
    """Must never appear raw in the output (independent of how safe_text decides)."""
    return (point < 0x20 or 0x7F <= point <= 0x9F or point in NAMED or 0xD800 <= point <= 0xDFFF
            or 0xE0000 <= point <= 0xE007F)  # tag characters: invisible "ASCII smuggling"


def unescape(shown: str) -> str:
    """Python's own decoder for the escapes safe_text writes (non-ASCII letters pass through)."""
    return shown.encode("ascii", "backslashreplace").decode("unicode_escape")


@pytest.mark.parametrize(("raw", "shown"), [
    ("SN-0001", "SN-0001"),
    ("", ""),
    ("\x1b[2J\x1b[31mOK", "\\x1b[2J\\x1b[31mOK"),  # clear screen, red "OK"
    ("SN-1\rSN-2", "SN-1\\x0dSN-2"),  # carriage return: "SN-2" would overwrite "SN-1"
    ("SN-1\nerror: forged line", "SN-1\\x0aerror: forged line"),
    ("a\tb", "a\\x09b"),
    ("\x00\x07\x08\x7f", "\\x00\\x07\\x08\\x7f"),
    ("\x85\x9b2J", "\\x85\\x9b2J"),  # C1: NEL and the one-byte CSI
    ("SN-\u202eTIBE", "SN-\\u202eTIBE"),  # right-to-left override: would display "SN-EBIT"
    ("\u2066x\u2069\u200e\u200f\u061c", "\\u2066x\\u2069\\u200e\\u200f\\u061c"),
    ("S\u200bN\u200c\u200d\u2060\ufeff", "S\\u200bN\\u200c\\u200d\\u2060\\ufeff"),
    ("a\u2028b\u2029c", "a\\u2028b\\u2029c"),
    ("\ud800lone\udcff", "\\ud800lone\\udcff"),
    ("\U000e0041\U000e0042", "\\U000e0041\\U000e0042"),  # tag characters: invisible text
    ("\\x1b[2J", "\\\\x1b[2J"),  # a fake escape: the backslash is doubled, so it cannot pass for ESC
    ("C:\\dir", "C:\\\\dir"),
    ("Müller 中文 café Ωmega", "Müller 中文 café Ωmega"),  # printable letters of any script stay
    ("emoji ✓ — …", "emoji ✓ — …"),
    (42, "42"),
    (None, "None"),
    (ValueError("bad\nserial"), "bad\\x0aserial"),
])
def test_escapes(raw: object, shown: str) -> None:
    assert safe_text(raw) == shown


@pytest.mark.parametrize(("raw", "limit", "shown"), [
    ("SN-0001", None, "SN-0001"),
    ("SN-0001", 7, "SN-0001"),
    ("SN-0001", 3, "SN-…(+4 chars)"),
    ("SN-0001", 0, "…(+7 chars)"),
    ("", 0, ""),
    ("ab\x1bcd", 4, "ab…(+3 chars)"),  # an escape is never cut in half: "ab\x" would be a broken escape
    ("ab\x1bcd", 6, "ab\\x1b…(+2 chars)"),
    ("中文中文", 2, "中文…(+2 chars)"),
    ("\\\\\\", 3, "\\\\…(+2 chars)"),
])
def test_limit(raw: str, limit: int | None, shown: str) -> None:
    assert safe_text(raw, limit) == shown


def test_negative_limit_is_refused() -> None:
    with pytest.raises(ValueError, match="limit"):
        safe_text("x", -1)


def _points() -> list[int]:
    return sorted(set(range(0x3001)) | set(NAMED) | set(range(0xD7F0, 0xE010)) | set(range(0xE0000, 0xE0080))
                  | set(range(0, 0x110000, 97)) | {0xFFFF, 0x10FFFF})


def test_no_code_point_reaches_the_output_raw() -> None:
    for point in _points():
        char = chr(point)
        for text in (char, f"a{char}b", f"\\{char}"):
            shown = safe_text(text)
            assert not any(forbidden(ord(c)) for c in shown), (hex(point), shown)
            assert unescape(shown) == text, hex(point)  # nothing lost, nothing faked: the escaping is reversible


def test_every_code_point_in_one_string_round_trips() -> None:
    text = "".join(chr(p) for p in _points())
    shown = safe_text(text)
    assert not any(forbidden(ord(c)) for c in shown)
    assert unescape(shown) == text


@pytest.mark.parametrize("point", [p for p in _points() if p < 0x20 or 0x7F <= p <= 0x9F or p in NAMED])
def test_listed_characters_are_escaped_in_python_notation(point: int) -> None:
    assert safe_text(chr(point)) == (f"\\x{point:02x}" if point <= 0xFF else f"\\u{point:04x}")


def test_formatter_keeps_one_record_per_line() -> None:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(SafeFormatter("%(levelname)s %(message)s"))
    logger = logging.getLogger("tests.safe_text")
    logger.addHandler(handler)
    logger.propagate = False
    try:
        logger.warning("device %s seen", "SN-1\nERROR forged record\x1b[2J")
        try:
            raise RuntimeError("switch said:\nERROR forged\x1b]0;title\x07")
        except RuntimeError:
            logger.exception("step failed for %s", "Gi1/0/1\r")
    finally:
        logger.removeHandler(handler)
    lines = stream.getvalue().splitlines()
    assert lines[0] == "WARNING device SN-1\\x0aERROR forged record\\x1b[2J seen"
    assert lines[1] == "ERROR step failed for Gi1/0/1\\x0d"
    assert all(line.startswith("    ") for line in lines[2:]), lines  # traceback lines can't pass for records
    assert "    ERROR forged\\x1b]0;title\\x07" in lines
    assert not any(forbidden(ord(c)) for c in stream.getvalue().replace("\n", ""))
