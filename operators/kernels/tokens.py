"""Compiled byte-level pre-tokenisation for token counts: one pass over a batch's UTF-8
content buffer splits each document into GPT-2's pre-tokenizer pieces and looks each piece
up in a per-process table of BPE lengths, with no Python object per piece.

The split follows GPT-2's regex, as the ``ByteLevel`` pre-tokenizer applies it::

    's|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+

with every code point classed once as a letter, a number, whitespace or other
(:func:`char_classes`):

- a run of letters, numbers or others, with the one space (U+0020) before it when there is
  one;
- a contraction where an apostrophe starts a piece (not after a space, not inside a run of
  others);
- a whitespace run that reaches the end of the text is one piece; one followed by text
  leaves its last character: a space joins the next run, another character stands alone.

With ``digits`` (StarCoder's ``Digits(individual_digits)`` before the byte-level step)
every number character is a piece of its own and the text between them is split as a
separate text.

The table holds each piece's bytes, so a lookup is exact (a hash only picks the slot). A
piece the table lacks is reported back (document, start, end, hash); the caller asks the
BPE model for its length once and inserts it.
"""

from __future__ import annotations

import functools

import numba
import numpy as np

from operators.kernels.utf8 import code_point

#: character classes
_OTHER, _LETTER, _DIGIT, _SPACE = 0, 1, 2, 3


@functools.lru_cache(maxsize=1)
def char_classes() -> np.ndarray:
    """The class of every code point, as the ``regex`` module's Unicode ``\\p{L}``,
    ``\\p{N}`` and ``\\s`` (the per-text path's pattern) see it; surrogates are "other"
    (UTF-8 cannot hold them). About 0.2 s, once per process."""
    import regex

    cls = np.zeros(0x110000, dtype=np.uint8)
    text = "".join(chr(c) if not 0xD800 <= c < 0xE000 else "\x00" for c in range(0x110000))
    for pattern, value in ((r"\p{L}+", _LETTER), (r"\p{N}+", _DIGIT), (r"\s+", _SPACE)):
        for m in regex.finditer(pattern, text):
            cls[m.start():m.end()] = value
    return cls


@numba.njit(cache=True, inline="always")
def _fnv(data, s, e):
    h = np.uint64(0xCBF29CE484222325)
    for k in range(s, e):
        h = (h ^ np.uint64(data[k])) * np.uint64(0x100000001B3)
    return h


@numba.njit(cache=True, inline="always")
def _equal(a, a_start, b, b_start, n):
    """Whether ``a[a_start:a_start + n]`` and ``b[b_start:b_start + n]`` hold the same bytes."""
    for k in range(n):
        if a[a_start + k] != b[b_start + k]:
            return False
    return True


@numba.njit(cache=True)
def _slot(data, s, e, h, keys, vals, poff, plen, arena):
    """The slot holding piece ``data[s:e]`` (hash ``h``), or the empty slot where it goes."""
    mask = np.uint64(keys.shape[0] - 1)
    i = h & mask
    n = e - s
    while vals[i] >= 0:
        if keys[i] == h and plen[i] == n and _equal(arena, poff[i], data, s, n):
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


@numba.njit(cache=True, inline="always")
def _char(data, i, end, cls):
    """(class, end) of the UTF-8 character at ``i`` (U+FFFD, "other", for a malformed
    byte)."""
    cp, nx = code_point(data, i, end)
    return cls[cp], nx


@numba.njit(cache=True, inline="always")
def _run(data, j, end, cls, k, last):
    """(start of the run's last character, the run's end) for the characters of class
    ``k`` from ``j``; ``last``: where the run's last character starts if none follow."""
    while j < end:
        k2, nx = _char(data, j, end, cls)
        if k2 != k:
            break
        last, j = j, nx
    return last, j


@numba.njit(cache=True)
def count_pieces(data, offsets, use, digits, cls, keys, vals, poff, plen, arena, counts,
                 miss, first):
    """Token counts of documents ``first..`` whose ``use`` is set, into ``counts`` (known
    pieces only); unknown pieces go to ``miss`` rows (doc, start, end, hash). Returns
    (the document to resume from: len(use) when all are done, rows of ``miss`` filled); a
    document whose misses overflow ``miss`` is left for the next call, after the caller
    has stored the ones reported. ``cls``: the class of every code point."""
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
                k, nx = _char(data, i, end, cls)
                if k == 2:
                    total, n_miss = _piece(data, i, nx, d, total, n_miss, keys, vals,
                                           poff, plen, arena, miss)
                    if n_miss < 0:
                        return d, mark
                    i = nx
                    continue
                part_end = nx
                while part_end < end:
                    k, nx = _char(data, part_end, end, cls)
                    if k == 2:
                        break
                    part_end = nx
            while i < part_end:
                k, nx = _char(data, i, part_end, cls)
                start = i
                if k == 3:  # the last whitespace character, the run's end
                    last, j = _run(data, nx, part_end, cls, 3, i)
                    if j == part_end:  # trailing whitespace: one piece
                        total, n_miss = _piece(data, i, j, d, total, n_miss, keys, vals,
                                               poff, plen, arena, miss)
                        if n_miss < 0:
                            return d, mark
                        i = j
                        continue
                    if last > i:  # \s+(?!\S): the run but its last character
                        total, n_miss = _piece(data, i, last, d, total, n_miss, keys, vals,
                                               poff, plen, arena, miss)
                        if n_miss < 0:
                            return d, mark
                    if data[last] != 32:  # not a space: a piece of its own
                        total, n_miss = _piece(data, last, j, d, total, n_miss, keys, vals,
                                               poff, plen, arena, miss)
                        if n_miss < 0:
                            return d, mark
                        i = j
                        continue
                    start = last  # the space leads the next run
                    i = j
                    k, nx = _char(data, i, part_end, cls)
                elif data[i] == 39:  # an apostrophe starting a piece
                    m = _contraction(data, i, part_end)
                    if m:
                        total, n_miss = _piece(data, i, i + 1 + m, d, total, n_miss, keys,
                                               vals, poff, plen, arena, miss)
                        if n_miss < 0:
                            return d, mark
                        i += 1 + m
                        continue
                _, j = _run(data, nx, part_end, cls, k, i)
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

    def insert(self, data: np.ndarray, starts: np.ndarray, ends: np.ndarray,
               hashes: np.ndarray, values: np.ndarray) -> None:
        """Store pieces ``data[starts[i]:ends[i]]``; a full table is cleared and filling
        goes on. A piece longer than the arena is not stored (it is asked for again when
        it comes back)."""
        done = 0
        while done < len(starts):
            done = insert_many(data, starts, ends, hashes, values, done, self.keys,
                               self.vals, self.poff, self.plen, self.arena, self.used)
            if done < len(starts):
                if self.used[0] == 0:  # even an empty table cannot hold it
                    done += 1
                else:
                    self.clear()

    def count(self, data: np.ndarray, offsets: np.ndarray, use: np.ndarray, digits: bool,
              length, miss_rows: int = 1 << 14) -> np.ndarray:
        """Token counts of the ``use`` documents (others 0). ``length(piece_bytes)`` gives
        the BPE length of a piece the table lacks: asked once per distinct piece."""
        counts = np.zeros(use.shape[0], dtype=np.int64)
        miss = np.zeros((miss_rows, 4), dtype=np.int64)
        first = 0
        while first < use.shape[0]:
            first, n = count_pieces(data, offsets, use, digits, char_classes(), self.keys,
                                    self.vals, self.poff, self.plen, self.arena, counts,
                                    miss, first)
            if n == 0 and first < use.shape[0]:  # one document misses more than the list
                miss = np.zeros((2 * miss.shape[0], 4), dtype=np.int64)
                continue
            if n:  # the misses of documents before ``first``, which are complete
                docs, starts, ends, hashes = (np.ascontiguousarray(c) for c in miss[:n].T)
                counts += np.bincount(docs, weights=self._lengths(data, starts, ends, hashes,
                                                                  length),
                                      minlength=len(counts)).astype(np.int64)
        return counts

    def _lengths(self, data, starts, ends, hashes, length) -> np.ndarray:
        """The BPE length of each missed piece: one ``length`` call per distinct piece
        (grouped by hash, every member checked byte for byte against its group's first),
        stored in the table."""
        _, first, group = np.unique(hashes, return_index=True, return_inverse=True)
        out = np.zeros(len(starts), dtype=np.int64)
        values = np.array([length(data[starts[i]:ends[i]].tobytes()) for i in first],
                          dtype=np.int64)
        out[:] = values[group]
        rep = first[group]
        for i in differs(data, starts, ends, starts[rep], ends[rep]).nonzero()[0]:
            out[i] = length(data[starts[i]:ends[i]].tobytes())  # a hash collision
        self.insert(data, starts[first], ends[first], hashes[first].view(np.uint64), values)
        return out


@numba.njit(cache=True)
def differs(data, starts, ends, ref_starts, ref_ends):
    """Per piece: whether its bytes differ from the reference piece's."""
    out = np.zeros(starts.shape[0], dtype=np.bool_)
    for i in range(starts.shape[0]):
        n = ends[i] - starts[i]
        out[i] = n != ref_ends[i] - ref_starts[i] or not _equal(data, starts[i], data,
                                                               ref_starts[i], n)
    return out


@numba.njit(cache=True)
def insert_many(data, starts, ends, hashes, values, first, keys, vals, poff, plen, arena,
                used):
    """Store pieces ``first..`` until the table is full; returns the first one not
    stored (len(starts) when all are)."""
    for i in range(first, starts.shape[0]):
        if not insert(data, starts[i], ends[i], hashes[i], values[i], keys, vals, poff, plen,
                      arena, used):
            return i
    return starts.shape[0]
