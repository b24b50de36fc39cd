"""Compiled scans over a batch's UTF-8 content buffer for the filters' measures: sums of a
per-byte flag, characters in data tokens (literals and data punctuation), characters in
comments. Each equals a plain regex form kept in ``tests/test_fast_paths.py``.
"""

from __future__ import annotations

import functools

import numba
import numpy as np

from operators.kernels.utf8 import class_table, code_point


@numba.njit(cache=True)
def flag_sums(data, offsets, flags):
    """Per row, the sum of ``flags[byte]`` over its bytes (one pass, no copies)."""
    out = np.zeros(offsets.shape[0] - 1, dtype=np.int64)
    for r in range(out.shape[0]):
        total = 0
        for k in range(offsets[r], offsets[r + 1]):
            total += flags[data[k]]
        out[r] = total
    return out


@functools.lru_cache(maxsize=1)
def word_digit_tables() -> tuple[np.ndarray, np.ndarray]:
    """Per code point, whether Python's ``re`` counts it as ``\\w`` and as ``\\d``
    (Unicode classes of str patterns); surrogates are neither."""
    return class_table(r"\w+"), class_table(r"\d+")


@numba.njit(cache=True, inline="always")
def _word_at(data, i, end, is_word):
    """Whether the character at ``i`` is ``\\w`` (False at the end: ``\\b`` holds)."""
    if i >= end:
        return False
    cp, _ = code_point(data, i, end)
    return is_word[cp]


@numba.njit(cache=True, inline="always")
def _digit_run(data, i, end, is_digit):
    """End of the run of ``\\d`` characters from ``i``."""
    while i < end:
        cp, nx = code_point(data, i, end)
        if not is_digit[cp]:
            break
        i = nx
    return i


@numba.njit(cache=True)
def _number_end(data, k, end, is_word, is_digit):
    """End of the number whose digits start at ``k`` (``\\d+(?:\\.\\d+)?(?:[eE][-+]?\\d+)?\\b``,
    with the regex's backtracking order), or -1. Shorter digit runs never end at a
    boundary (a digit follows), so only whole runs are tried."""
    p1 = _digit_run(data, k, end, is_digit)
    if p1 == k:
        return -1
    p2 = -1  # after the fraction
    if p1 + 1 < end and data[p1] == 46:  # "."
        q = _digit_run(data, p1 + 1, end, is_digit)
        if q > p1 + 1:
            p2 = q
    base = p2 if p2 >= 0 else p1
    p3 = -1  # after the exponent
    if base < end and (data[base] == 101 or data[base] == 69):  # e E
        q = base + 1
        if q < end and (data[q] == 43 or data[q] == 45):  # + -
            q += 1
        r = _digit_run(data, q, end, is_digit)
        if r > q:
            p3 = r
    if p3 >= 0 and not _word_at(data, p3, end, is_word):
        return p3
    if p2 >= 0 and not _word_at(data, p2, end, is_word):
        return p2
    if not _word_at(data, p1, end, is_word):
        return p1
    return -1


@numba.njit(cache=True)
def _last_word(data, start, stop, end, is_word):
    """Whether the last character of ``data[start:stop]`` is ``\\w``."""
    k = stop - 1
    while k > start and data[k] & 0xC0 == 0x80:
        k -= 1
    cp, _ = code_point(data, k, end)
    return is_word[cp]


@numba.njit(cache=True)
def data_chars(data, offsets, rows, is_word, is_digit):
    """Per row: (characters in data tokens, non-whitespace characters), matching
    the data-token regex left to right as ``findall`` does."""
    found = np.zeros(rows.shape[0], dtype=np.int64)
    non_ws = np.zeros(rows.shape[0], dtype=np.int64)
    for r in range(rows.shape[0]):
        a, end = offsets[rows[r]], offsets[rows[r] + 1]
        chars = 0
        for k in range(a, end):
            c = data[k]
            if c & 0xC0 != 0x80 and c != 32 and c != 9 and c != 10 and c != 13:
                chars += 1
        non_ws[r] = chars
        total = 0
        prev_word = False
        i = a
        while i < end:
            c = data[i]
            stop = -1
            if c == 34 or c == 39:  # a string: up to 200 units, then the same quote
                j, units = i + 1, 0
                while j < end:
                    ch = data[j]
                    if ch == c:
                        stop = j + 1
                        break
                    if units == 200 or ch == 10:
                        break
                    if ch == 92:  # backslash and any character but a newline
                        if j + 1 >= end or data[j + 1] == 10:
                            break
                        _, j = code_point(data, j + 1, end)
                    else:
                        _, j = code_point(data, j, end)
                    units += 1
            elif c == 43 or c == 45:  # [-+] then a number
                stop = _number_end(data, i + 1, end, is_word, is_digit)
            elif (c == 91 or c == 93 or c == 123 or c == 125 or c == 44 or c == 58
                  or c == 59):  # [ ] { } , : ;
                stop = i + 1
            elif not prev_word:
                if c == 48 and i + 2 < end and (data[i + 1] == 120 or data[i + 1] == 88):
                    h = i + 2  # 0x + hex digits, then a boundary
                    while h < end and (48 <= data[h] <= 57 or 97 <= data[h] <= 102
                                       or 65 <= data[h] <= 70):
                        h += 1
                    if h > i + 2 and not _word_at(data, h, end, is_word):
                        stop = h
                if stop < 0:
                    cp, _ = code_point(data, i, end)
                    if is_digit[cp]:
                        stop = _number_end(data, i, end, is_word, is_digit)
            if stop > 0:
                for k in range(i, stop):
                    if data[k] & 0xC0 != 0x80:
                        total += 1
                prev_word = _last_word(data, i, stop, end, is_word)
                i = stop
            else:
                cp, nx = code_point(data, i, end)
                prev_word = is_word[cp]
                i = nx
        found[r] = total
    return found, non_ws


#: comment-syntax families, as codes for :func:`comment_chars`
FAMILIES = ("hash", "python", "c", "php", "sql", "css", "html")


@numba.njit(cache=True, inline="always")
def _find(data, i, end, a, b, c):
    """Start of the first ``a b c`` (``c`` < 0: ``a b``) at or after ``i``, or -1."""
    n = 2 if c < 0 else 3
    while i + n <= end:
        if data[i] == a and data[i + 1] == b and (c < 0 or data[i + 2] == c):
            return i
        i += 1
    return -1


@numba.njit(cache=True)
def comment_chars(data, offsets, rows, families, is_space, min_lines):
    """Per row: (characters in comments, characters, non-blank lines up to ``min_lines``),
    matching the family's comment regex left to right as ``finditer`` does
    (``families``: indices into :data:`FAMILIES`)."""
    n = rows.shape[0]
    comment = np.zeros(n, dtype=np.int64)
    chars = np.zeros(n, dtype=np.int64)
    lines = np.zeros(n, dtype=np.int64)
    for r in range(n):
        a, end = offsets[rows[r]], offsets[rows[r] + 1]
        fam = families[r]
        dotall = fam >= 2  # the c, php, sql, css and html patterns carry re.S
        # characters and non-blank lines (a line with a character re's \S matches)
        blank, count = True, 0
        k = a
        while k < end:
            cp, nx = code_point(data, k, end)
            chars[r] += 1
            if cp == 10:
                if not blank:
                    count += 1
                blank = True
            elif not is_space[cp]:
                blank = False
            k = nx
        if not blank:
            count += 1
        lines[r] = min(count, min_lines)
        if lines[r] < min_lines:
            continue
        total = 0
        i = a
        while i < end:
            c = data[i]
            nxt = data[i + 1] if i + 1 < end else 0
            stop, is_comment = -1, False
            if ((c == 35 and fam <= 1) or (c == 35 and fam == 3 and nxt != 91)
                    or (c == 47 and nxt == 47 and (fam == 2 or fam == 3))
                    or (c == 45 and nxt == 45 and fam == 4)):  # a line comment
                stop = i + 1
                while stop < end and data[stop] != 10:
                    stop += 1
                is_comment = True
            elif c == 47 and nxt == 42 and 2 <= fam <= 5:  # /* ... */
                e = _find(data, i + 2, end, 42, 47, -1)
                if e >= 0:
                    stop, is_comment = e + 2, True
            elif c == 60 and fam == 6:  # <!-- ... -->
                if i + 3 < end and nxt == 33 and data[i + 2] == 45 and data[i + 3] == 45:
                    e = _find(data, i + 4, end, 45, 45, 62)
                    if e >= 0:
                        stop, is_comment = e + 3, True
            elif (c == 34 or c == 39) and fam == 1 and nxt == c and i + 2 < end \
                    and data[i + 2] == c:  # a docstring, when it closes
                e = _find(data, i + 3, end, c, c, c)
                if e >= 0:
                    stop, is_comment = e + 3, True
            if stop < 0 and (c == 34 or c == 39) and fam != 6:  # a string: skipped
                j = i + 1
                while j < end:
                    ch = data[j]
                    if ch == c:
                        stop = j + 1
                        break
                    if ch == 10:
                        break
                    if ch == 92:
                        if j + 1 >= end or (data[j + 1] == 10 and not dotall):
                            break
                        _, j = code_point(data, j + 1, end)
                    else:
                        j += 1
            if stop < 0 and c == 96 and fam == 2:  # a backtick string: skipped
                e = i + 1
                while e < end and data[e] != 96:
                    e += 1
                if e < end:
                    stop = e + 1
            if stop < 0:
                i += 1  # every alternative starts with an ASCII character
                continue
            if is_comment:
                for k in range(i, stop):
                    if data[k] & 0xC0 != 0x80:
                        total += 1
            i = stop
        comment[r] = total
    return comment, chars, lines
