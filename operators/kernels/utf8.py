"""UTF-8 over Arrow buffers: the data and offsets of a string array without copies, one
code point at a time in compiled code, and per-code-point tables of Python ``re`` classes.
"""

from __future__ import annotations

import functools
import re

import numba
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc


def content_buffers(content: pa.Array) -> tuple[np.ndarray, np.ndarray]:
    """(bytes, ``int64`` offsets) of a string array as large strings, nulls as empty."""
    content = content.cast(pa.large_string())
    if content.null_count:
        content = pc.fill_null(content, "")
    bufs = content.buffers()
    offsets = np.frombuffer(bufs[1], dtype=np.int64)[content.offset:
                                                     content.offset + len(content) + 1]
    data = np.frombuffer(bufs[2], dtype=np.uint8) if bufs[2] is not None else \
        np.zeros(0, dtype=np.uint8)
    return data, offsets


@numba.njit(cache=True, inline="always")
def code_point(data, i, end):
    """(code point, end) of the UTF-8 character at ``i``; a malformed byte is one U+FFFD."""
    b = data[i]
    if b < 0x80:
        return np.int64(b), i + 1
    if b >= 0xF0:
        n, cp = 4, np.int64(b & 0x07)
    elif b >= 0xE0:
        n, cp = 3, np.int64(b & 0x0F)
    elif b >= 0xC0:
        n, cp = 2, np.int64(b & 0x1F)
    else:
        return np.int64(0xFFFD), i + 1
    if i + n > end:
        return np.int64(0xFFFD), i + 1
    for k in range(1, n):
        c = data[i + k]
        if c & 0xC0 != 0x80:
            return np.int64(0xFFFD), i + 1
        cp = (cp << 6) | np.int64(c & 0x3F)
    if cp >= 0x110000:
        return np.int64(0xFFFD), i + 1
    return cp, i + n


@functools.lru_cache(maxsize=4)
def class_table(pattern: str) -> np.ndarray:
    """Per code point, whether Python's ``re`` matches it with ``pattern`` (a class run)."""
    text = "".join(chr(c) if not 0xD800 <= c < 0xE000 else "\x00" for c in range(0x110000))
    table = np.zeros(0x110000, dtype=np.bool_)
    for m in re.finditer(pattern, text):
        table[m.start():m.end()] = True
    table[0xD800:0xE000] = False
    return table
