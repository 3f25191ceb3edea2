"""Reading JSON-lines files the way every streamsent entry point does: one rule for line endings and the BOM.

A UTF-8 byte-order mark at the start of a file is dropped (editors on Windows write one), a line ends at "\\n" or
"\\r\\n", and blank lines (only whitespace) are skipped. The bytes of each line are otherwise handed over as they are:
whether they are valid UTF-8 or JSON is for the consumer of the line to decide (the pipeline dead-letters them).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

__all__ = ["BOM", "iter_lines", "strip_bom"]

BOM = b"\xef\xbb\xbf"  # UTF-8 encoding of U+FEFF


def strip_bom(first_line: bytes) -> bytes:
    """The first line of a file without a leading UTF-8 byte-order mark (only the file's first line can have one)."""
    return first_line[len(BOM):] if first_line.startswith(BOM) else first_line


def iter_lines(lines: Iterable[bytes]) -> Iterator[tuple[int, bytes]]:
    """(1-based line number, line without its ending) for each non-blank line of a binary file's lines."""
    for number, raw in enumerate(lines, start=1):
        if raw.endswith(b"\n"):
            raw = raw[:-2] if raw.endswith(b"\r\n") else raw[:-1]
        if number == 1:
            raw = strip_bom(raw)
        if raw.strip():
            yield number, raw
