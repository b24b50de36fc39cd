"""Compiled MinHash passes over a batch's UTF-8 content buffer (see :mod:`operators.minhash`
for the scheme): tokens, shingle hashes, signatures and band hashes."""

from __future__ import annotations

import numba
import numpy as np


@numba.njit(cache=True, inline="always")
def _mix(x):
    x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return x ^ (x >> np.uint64(31))


@numba.njit(cache=True, inline="always")
def _rotl(x, k):
    return (x << np.uint64(k)) | (x >> np.uint64(64 - k))


@numba.njit(cache=True)
def _is_word(c):
    return (48 <= c <= 57) or (65 <= c <= 90) or (97 <= c <= 122) or c == 95


@numba.njit(cache=True, inline="always")
def _next_token(data, i, end, lower):
    """The token at or after ``i`` (skipping separators): (hash, index after it, found).
    ``lower`` folds ASCII capitals first."""
    while i < end and not _is_word(data[i]):
        i += 1
    if i >= end:
        return np.uint64(0), end, False
    h = np.uint64(0xCBF29CE484222325)  # FNV-1a
    while i < end and _is_word(data[i]):
        c = data[i]
        if lower and 65 <= c <= 90:
            c += 32
        h = (h ^ np.uint64(c)) * np.uint64(0x100000001B3)
        i += 1
    return _mix(h), i, True


@numba.njit(cache=True, inline="always")
def _shingle(ring, count, ngram):
    """Hash of the last ``ngram`` token hashes in the ring (oldest first)."""
    s = np.uint64(0)
    for j in range(ngram):
        s ^= _rotl(ring[(count - ngram + j) % ngram], (13 * j) % 63 + 1)
    return _mix(s + np.uint64(ngram))


@numba.njit(cache=True, inline="always")
def _doc_shingles(data, start, end, ngram, lower, ring, buf):
    """Writes the shingle hashes of ``data[start:end]`` into ``buf`` (at least half the
    bytes long); returns (shingles, tokens)."""
    i = start
    count = 0
    k = 0
    while True:
        h, i, found = _next_token(data, i, end, lower)
        if not found:
            break
        ring[count % ngram] = h
        count += 1
        if count >= ngram:
            buf[k] = _shingle(ring, count, ngram)
            k += 1
    return k, count


@numba.njit(cache=True)
def signatures_into(data, offsets, a, b, ngram, out, n_tokens, buf):
    """Per document: token count and the ``len(a)`` minima of ``a·h + b`` over its
    shingle hashes ``h`` (out rows pre-filled with the maximum)."""
    num_perm = a.shape[0]
    ring = np.zeros(ngram, dtype=np.uint64)
    for d in range(offsets.shape[0] - 1):
        k, n_tokens[d] = _doc_shingles(data, offsets[d], offsets[d + 1], ngram, False,
                                       ring, buf)
        row = out[d]
        for p in range(k):
            s = buf[p]
            for j in range(num_perm):
                v = a[j] * s + b[j]
                if v < row[j]:
                    row[j] = v


@numba.njit(cache=True)
def shingles_into(data, offsets, ngram, lower, out, starts):
    """Every document's shingle hashes, concatenated into ``out`` (sized for the most
    possible); ``starts[d + 1]`` gets the end of document ``d``'s run."""
    ring = np.zeros(ngram, dtype=np.uint64)
    pos = 0
    for d in range(offsets.shape[0] - 1):
        k, _ = _doc_shingles(data, offsets[d], offsets[d + 1], ngram, lower, ring, out[pos:])
        pos += k
        starts[d + 1] = pos


@numba.njit(cache=True)
def bands_into(sigs, bands, rows, out):
    for d in range(sigs.shape[0]):
        for band in range(bands):
            h = np.uint64(0x9E3779B97F4A7C15) * np.uint64(band + 1)
            for j in range(rows):
                h = _mix(h ^ sigs[d, band * rows + j])
            out[d, band] = h
