"""A window of a file's lines, taken from its bytes as they stream past.

Backends feed the chunks of a file they read (from a file descriptor, from a remote
download) to a `LineWindow`, which keeps only the lines asked for, at most `max_bytes`
of them, and counts the rest without keeping them. Memory stays bounded whatever the
file holds: a gigabyte with no newline in it is one line, cut to `max_bytes`.

Lines end at `\\n` (a `\\r` before it is dropped), as `grep -n` and `sed` number them.
"""

from __future__ import annotations

import codecs

from sessionflow.sandbox.base import FileLines

# How much of a file backends read at a time.
CHUNK_BYTES = 64 * 1024


class LineWindow:
    """Collects lines `offset`..`offset + limit - 1` (1-based) from a stream of bytes,
    at most `max_bytes` of them, looking at no more than `scan_bytes` of the stream.

    Feed it chunks while `wants_more`, then call `result(eof=...)`.
    """

    def __init__(self, *, offset: int, limit: int, max_bytes: int, scan_bytes: int) -> None:
        if offset < 1 or limit < 1 or max_bytes < 1:
            raise ValueError("offset, limit and max_bytes must be at least 1")
        self._offset = offset
        self._end = offset + limit  # the first line number past the window
        self._max_bytes = max_bytes
        self._scan_bytes = scan_bytes
        self._line = 1  # the number of the line the next byte belongs to
        self._lines: list[bytes] = []
        self._kept = 0  # bytes in self._lines
        self._current = bytearray()  # the start of a window line not ended yet
        self._cut = False
        self._full = False  # the window takes no more lines: only count from here
        self._scanned = 0
        self._last_byte = b"\n"  # an empty stream has no lines

    @property
    def wants_more(self) -> bool:
        return self._scanned < self._scan_bytes

    @property
    def room(self) -> int:
        """How many more bytes it will look at."""
        return max(self._scan_bytes - self._scanned, 0)

    def feed(self, chunk: bytes) -> None:
        chunk = chunk[: self.room]
        if not chunk:
            return
        self._scanned += len(chunk)
        self._last_byte = chunk[-1:]
        pos, end = 0, len(chunk)
        while pos < end:
            if self._full:
                self._line += chunk.count(b"\n", pos)
                return
            if self._line < self._offset:
                pos = self._skip(chunk, pos)
                continue
            newline = chunk.find(b"\n", pos)
            stop = end if newline < 0 else newline
            room = self._max_bytes - self._kept - len(self._current)
            if stop - pos > room:  # this line does not fit
                self._current += chunk[pos : pos + room]
                self._overflow()
                pos += room
                continue
            self._current += chunk[pos:stop]
            if newline < 0:
                return
            self._line_ended()
            pos = newline + 1

    def result(self, *, eof: bool) -> FileLines:
        """The window; `eof` says whether the stream ended (else the line count is
        unknown)."""
        if self._current and not self._full:
            if eof:
                self._line_ended()  # the last line, without a newline
                self._line -= 1
            else:
                self._overflow()  # the scan stopped inside this line
        total = None
        if eof:
            total = self._line - (1 if self._last_byte == b"\n" else 0)
        lines = [line.decode("utf-8", "replace") for line in self._lines]
        if self._cut:
            lines[-1] = _decode_start(self._lines[-1])
        return FileLines(lines=lines, cut=self._cut, total_lines=total)

    def _skip(self, chunk: bytes, pos: int) -> int:
        """Past the newlines before the window; where the window starts, or the end."""
        needed = self._offset - self._line
        if chunk.count(b"\n", pos) < needed:
            self._line += chunk.count(b"\n", pos)
            return len(chunk)
        for _ in range(needed):
            pos = chunk.index(b"\n", pos) + 1
        self._line += needed
        return pos

    def _line_ended(self) -> None:
        line = bytes(self._current)
        self._current.clear()
        if line.endswith(b"\r"):
            line = line[:-1]
        self._lines.append(line)
        self._kept += len(line)
        self._line += 1
        if self._line >= self._end:
            self._full = True

    def _overflow(self) -> None:
        """The current line does not fit: the window ends before it, or, if it is the
        window's first line, with its start (cut)."""
        if not self._lines:
            self._lines.append(bytes(self._current))
            self._cut = True
        self._current.clear()
        self._full = True  # its newline, still ahead, is counted as it comes


def _decode_start(line: bytes) -> str:
    """A cut line may end inside a character: leave those bytes out, not show junk."""
    return codecs.getincrementaldecoder("utf-8")("replace").decode(line, final=False)
