"""Compiled byte-level pre-tokenisation for token counts: one pass over a batch's content
buffer splits each ASCII document into GPT-2's pre-tokenizer pieces and looks each piece up
in a per-process table of BPE lengths, with no Python object per piece.

The split follows GPT-2's regex, as the ``ByteLevel`` pre-tokenizer applies it, on ASCII
text (``re.ASCII`` classes: letters ``A-Za-z``, digits ``0-9``, whitespace
``[ \\t\\n\\v\\f\\r]``, everything else "other")::

    's|'t|'re|'ve|'m|'ll|'d| ?[A-Za-z]+| ?[0-9]+| ?[^\\sA-Za-z0-9]+|\\s+(?!\\S)|\\s+

- a run of letters, digits or others, with the one space before it when there is one;
- a contraction where an apostrophe starts a piece (not after a space, not inside a run of
  others);
- a whitespace run that reaches the end of the text is one piece; one followed by text
  leaves its last character: a space joins the next run, another character stands alone.

With ``digits`` (StarCoder's ``Digits(individual_digits)`` before the byte-level step)
every digit is a piece of its own and the text between digits is split as a separate text.

The table holds each piece's bytes, so a lookup is exact (a hash only picks the slot). A
piece the table lacks is reported back (document, start, end, hash); the caller asks the
BPE model for its length once and inserts it.
"""

from __future__ import annotations

import numba
import numpy as np

#: byte classes
_OTHER, _LETTER, _DIGIT, _SPACE = 0, 1, 2, 3


def _classes() -> np.ndarray:
    cls = np.zeros(256, dtype=np.uint8)
    for c in b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz":
        cls[c] = _LETTER
    for c in b"0123456789":
        cls[c] = _DIGIT
    for c in b" \t\n\x0b\x0c\r":
        cls[c] = _SPACE
    return cls


CLASSES = _classes()


@numba.njit(cache=True, inline="always")
def _fnv(data, s, e):
    h = np.uint64(0xCBF29CE484222325)
    for k in range(s, e):
        h = (h ^ np.uint64(data[k])) * np.uint64(0x100000001B3)
    return h


@numba.njit(cache=True)
def _slot(data, s, e, h, keys, vals, poff, plen, arena):
    """The slot holding piece ``data[s:e]`` (hash ``h``), or the empty slot where it goes."""
    mask = np.uint64(keys.shape[0] - 1)
    i = h & mask
    n = e - s
    while vals[i] >= 0:
        if keys[i] == h and plen[i] == n:
            o = poff[i]
            same = True
            for k in range(n):
                if arena[o + k] != data[s + k]:
                    same = False
                    break
            if same:
                return i
        i = (i + np.uint64(1)) & mask
    return i


@numba.njit(cache=True)
def insert(data, s, e, h, value, keys, vals, poff, plen, arena, used):
    """Store piece ``data[s:e]`` with its length; False when the table or its byte arena is
    full (the caller clears it and inserts again). ``used``: [entries, arena bytes]."""
    n = e - s
    if used[0] + 1 > keys.shape[0] // 2 or used[1] + n > arena.shape[0]:
        return False
    i = _slot(data, s, e, h, keys, vals, poff, plen, arena)
    if vals[i] >= 0:
        return True
    o = used[1]
    for k in range(n):
        arena[o + k] = data[s + k]
    keys[i], vals[i], poff[i], plen[i] = h, value, o, n
    used[0] += 1
    used[1] += n
    return True


@numba.njit(cache=True, inline="always")
def _piece(data, s, e, d, total, n_miss, keys, vals, poff, plen, arena, miss):
    """Add piece ``data[s:e]`` of document ``d``: (total, n_miss), n_miss = -1 when the miss
    list is full."""
    h = _fnv(data, s, e)
    v = vals[_slot(data, s, e, h, keys, vals, poff, plen, arena)]
    if v >= 0:
        return total + v, n_miss
    if n_miss >= miss.shape[0]:
        return total, -1
    miss[n_miss, 0] = d
    miss[n_miss, 1] = s
    miss[n_miss, 2] = e
    miss[n_miss, 3] = np.int64(h)
    return total, n_miss + 1


@numba.njit(cache=True, inline="always")
def _contraction(data, i, end):
    """Letters of a contraction after the apostrophe at ``i`` ('s 't 're 've 'm 'll 'd)."""
    if i + 1 >= end:
        return 0
    c = data[i + 1]
    if c == 115 or c == 116 or c == 109 or c == 100:  # s t m d
        return 1
    if i + 2 < end:
        c2 = data[i + 2]
        if (c == 114 or c == 118) and c2 == 101:  # re ve
            return 2
        if c == 108 and c2 == 108:  # ll
            return 2
    return 0


@numba.njit(cache=True)
def count_pieces(data, offsets, use, digits, cls, keys, vals, poff, plen, arena, counts,
                 miss, first):
    """Token counts of documents ``first..`` whose ``use`` is set, into ``counts`` (known
    pieces only); unknown pieces go to ``miss`` rows (doc, start, end, hash). Returns
    (the document to resume from: len(use) when all are done, rows of ``miss`` filled); a
    document whose misses overflow ``miss`` is left for the next call, after the caller
    has stored the ones reported."""
    n_miss = 0
    for d in range(first, use.shape[0]):
        if not use[d]:
            continue
        mark = n_miss
        total = 0
        i = offsets[d]
        end = offsets[d + 1]
        while i < end:
            part_end = end
            if digits:
                if cls[data[i]] == 2:
                    total, n_miss = _piece(data, i, i + 1, d, total, n_miss, keys, vals,
                                           poff, plen, arena, miss)
                    if n_miss < 0:
                        return d, mark
                    i += 1
                    continue
                part_end = i + 1
                while part_end < end and cls[data[part_end]] != 2:
                    part_end += 1
            while i < part_end:
                k = cls[data[i]]
                start = i
                if k == 3:
                    j = i + 1
                    while j < part_end and cls[data[j]] == 3:
                        j += 1
                    if j == part_end:  # trailing whitespace: one piece
                        total, n_miss = _piece(data, i, j, d, total, n_miss, keys, vals,
                                               poff, plen, arena, miss)
                        if n_miss < 0:
                            return d, mark
                        i = j
                        continue
                    if j - i >= 2:  # \s+(?!\S): the run but its last character
                        total, n_miss = _piece(data, i, j - 1, d, total, n_miss, keys, vals,
                                               poff, plen, arena, miss)
                        if n_miss < 0:
                            return d, mark
                    if data[j - 1] != 32:  # not a space: a piece of its own
                        total, n_miss = _piece(data, j - 1, j, d, total, n_miss, keys, vals,
                                               poff, plen, arena, miss)
                        if n_miss < 0:
                            return d, mark
                        i = j
                        continue
                    start = j - 1  # the space leads the next run
                    i = j
                    k = cls[data[i]]
                elif data[i] == 39:  # an apostrophe starting a piece
                    m = _contraction(data, i, part_end)
                    if m:
                        total, n_miss = _piece(data, i, i + 1 + m, d, total, n_miss, keys,
                                               vals, poff, plen, arena, miss)
                        if n_miss < 0:
                            return d, mark
                        i += 1 + m
                        continue
                j = i + 1
                while j < part_end and cls[data[j]] == k:
                    j += 1
                total, n_miss = _piece(data, start, j, d, total, n_miss, keys, vals, poff,
                                       plen, arena, miss)
                if n_miss < 0:
                    return d, mark
                i = j
        counts[d] = total
    return use.shape[0], n_miss


class PieceTable:
    """The per-process table of piece lengths: open addressing over ``slots`` (a power of
    two, at most half full) and a byte arena holding the pieces."""

    def __init__(self, slots: int = 1 << 17, arena_bytes: int = 4 << 20):
        if slots & (slots - 1):
            raise ValueError(f"slots must be a power of two, got {slots}")
        self.keys = np.zeros(slots, dtype=np.uint64)
        self.vals = np.full(slots, -1, dtype=np.int64)
        self.poff = np.zeros(slots, dtype=np.int64)
        self.plen = np.zeros(slots, dtype=np.int64)
        self.arena = np.zeros(arena_bytes, dtype=np.uint8)
        self.used = np.zeros(2, dtype=np.int64)

    def __len__(self) -> int:
        return int(self.used[0])

    def clear(self) -> None:
        self.vals.fill(-1)
        self.used[:] = 0

    def insert(self, data: np.ndarray, s: int, e: int, h: int, value: int) -> None:
        """Store a piece; a full table is cleared first. A piece longer than the arena is
        not stored (it is asked for again when it comes back)."""
        if e - s > self.arena.shape[0]:
            return
        args = (np.uint64(h), value, self.keys, self.vals, self.poff, self.plen, self.arena,
                self.used)
        if not insert(data, s, e, *args):
            self.clear()
            insert(data, s, e, *args)

    def count(self, data: np.ndarray, offsets: np.ndarray, use: np.ndarray, digits: bool,
              length, miss_rows: int = 1 << 14) -> np.ndarray:
        """Token counts of the ``use`` documents (others 0). ``length(piece_bytes)`` gives
        the BPE length of a piece the table lacks."""
        counts = np.zeros(use.shape[0], dtype=np.int64)
        miss = np.zeros((miss_rows, 4), dtype=np.int64)
        first = 0
        while first < use.shape[0]:
            first, n = count_pieces(data, offsets, use, digits, CLASSES, self.keys,
                                    self.vals, self.poff, self.plen, self.arena, counts,
                                    miss, first)
            if n == 0 and first < use.shape[0]:  # one document misses more than the list
                miss = np.zeros((2 * miss.shape[0], 4), dtype=np.int64)
                continue
            known: dict[bytes, int] = {}
            for d, s, e, h in miss[:n].tolist():  # documents before ``first``: complete
                piece = data[s:e].tobytes()
                v = known.get(piece)
                if v is None:
                    v = known[piece] = length(piece)
                    self.insert(data, s, e, h & 0xFFFFFFFFFFFFFFFF, v)
                counts[d] += v
        return counts
