"""A compiled scan for the lines of a batch worth a secret detector's closer look: lines
that hold one of a few words in any ASCII case (or one of the four non-ASCII letters that
Python's case-insensitive matching or ``str.lower`` equates with an ASCII one: the Kelvin
sign, dotted and dotless i, long s) and a character an assignment needs."""

from __future__ import annotations

import numba
import numpy as np


def literal_tables(words) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Words (sorted, distinct) for :func:`keyword_line_bounds`: their bytes end to end,
    where each ends, and per byte the range [lo, hi) of words starting with it (either
    case)."""
    words = sorted(set(words))
    data = np.frombuffer("".join(words).encode(), dtype=np.uint8)
    ends = np.cumsum([len(w) for w in words]).astype(np.int64)
    first = np.zeros((256, 2), dtype=np.int64)
    for k, w in enumerate(words):
        for b in {ord(w[0]), ord(w[0].upper())}:
            if first[b, 1] == 0:
                first[b, 0] = k
            first[b, 1] = k + 1
    return data, ends, first



@numba.njit(cache=True)
def keyword_line_bounds(data, offsets, rows, lits, lit_ends, first, key_word, quals,
                        qual_ends):
    """Per row of ``rows``: the lines (character start and end, without the newline) that
    hold one of the characters an assignment needs (a quote or backquote, ``=``, ``:``,
    ``>``, ``-``) and either one of the words of :func:`literal_tables` in any ASCII case
    or one of the non-ASCII letters of the module's docstring. Word ``key_word`` (an index
    into the words, -1 for none) counts only right after one of the qualifier words
    ``quals`` (:func:`literal_tables`' first two arrays), maybe with one ``_``, ``-`` or
    ``.`` between: ``api_key``, ``AccessKey``."""
    n = 0
    cap = 1024
    line_row = np.zeros(cap, dtype=np.int64)
    starts = np.zeros(cap, dtype=np.int64)
    ends = np.zeros(cap, dtype=np.int64)
    for r in range(rows.shape[0]):
        a, end = offsets[rows[r]], offsets[rows[r] + 1]
        i, chars = a, 0
        while i < end:  # one line from i
            line_chars = chars
            quote, word = False, False
            while i < end and data[i] != 10:
                c = data[i]
                if c == 34 or c == 39 or c == 96 or c == 61 or c == 58 or c == 62 or c == 45:
                    quote = True
                elif c >= 0x80:
                    if i + 1 < end and ((c == 0xC4 and (data[i + 1] == 0xB0 or data[i + 1] == 0xB1))
                                        or (c == 0xC5 and data[i + 1] == 0xBF)
                                        or (c == 0xE2 and i + 2 < end and data[i + 1] == 0x84
                                            and data[i + 2] == 0xAA)):
                        word = True
                elif not word and first[c, 1] > 0:
                    for w in range(first[c, 0], first[c, 1]):
                        lo = lit_ends[w - 1] if w > 0 else 0
                        if i + lit_ends[w] - lo > end:
                            continue
                        same = True
                        for k in range(1, lit_ends[w] - lo):
                            b = data[i + k]
                            if (b + 32 if 65 <= b <= 90 else b) != lits[lo + k]:
                                same = False
                                break
                        if same and w == key_word:
                            same = _after_qualifier(data, a, i, quals, qual_ends)
                        if same:
                            word = True
                            break
                if c & 0xC0 != 0x80:
                    chars += 1
                i += 1
            if quote and word:
                if n == cap:
                    cap *= 2
                    line_row = np.concatenate((line_row, np.zeros(cap - n, np.int64)))
                    starts = np.concatenate((starts, np.zeros(cap - n, np.int64)))
                    ends = np.concatenate((ends, np.zeros(cap - n, np.int64)))
                line_row[n], starts[n], ends[n] = r, line_chars, chars
                n += 1
            if i < end:  # the newline
                i += 1
                chars += 1
    return line_row[:n], starts[:n], ends[:n]


@numba.njit(cache=True)
def _after_qualifier(data, start, i, quals, qual_ends):
    """Whether one of the words ``quals`` (lowercase) ends at ``i`` or just before a
    separator there, in any ASCII case, no earlier than ``start``."""
    j = i
    if j > start and (data[j - 1] == 95 or data[j - 1] == 45 or data[j - 1] == 46):
        j -= 1
    for q in range(qual_ends.shape[0]):
        lo = qual_ends[q - 1] if q > 0 else 0
        n = qual_ends[q] - lo
        if j - n < start:
            continue
        same = True
        for k in range(n):
            b = data[j - n + k]
            if (b + 32 if 65 <= b <= 90 else b) != quals[lo + k]:
                same = False
                break
        if same:
            return True
    return False
