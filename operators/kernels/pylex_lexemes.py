"""The lexemes of Python 3.11's ``tokenize``, for :mod:`operators.kernels.pylex`: names,
numbers as its ``Number`` pattern reads them, string prefixes and triple-quoted ends, and
the exact operator tokens by longest match, over UTF-8 bytes."""

from __future__ import annotations

import numba
import numpy as np

def pack(word: bytes) -> int:
    return int.from_bytes(word, "little")


def _op_tables() -> tuple[np.ndarray, np.ndarray]:
    """Python 3.11's exact operator tokens: a flag per one-byte operator, and one per
    pair of bytes that is a two-byte operator (the three-byte ones: :data:`THREE_OPS`)."""
    import token

    one = np.zeros(256, dtype=np.uint8)
    two = np.zeros(65536, dtype=np.uint8)
    for op in token.EXACT_TOKEN_TYPES:
        b = op.encode()
        if len(b) == 1:
            one[b[0]] = 1
        elif len(b) == 2:
            two[b[0] * 256 + b[1]] = 1
    return one, two


ONE_OPS, TWO_OPS = _op_tables()
THREE_OPS = tuple(pack(o.encode()) for o in ("**=", "...", "//=", "<<=", ">>="))


@numba.njit(cache=True, inline="always")
def name_byte(b):
    return (97 <= b <= 122) or (65 <= b <= 90) or (48 <= b <= 57) or b == 95


@numba.njit(cache=True, inline="always")
def digit(b):
    return 48 <= b <= 57


@numba.njit(cache=True, inline="always")
def packed(data, s, e):
    """The bytes [s, e) packed little-endian when they are at most 8, else -1."""
    if e - s > 8:
        return -1
    v = 0
    for k in range(e - 1, s - 1, -1):
        v = (v << 8) | np.int64(data[k])
    return v


@numba.njit(cache=True, inline="always")
def digits(data, j, mx):
    """End of ``[0-9](?:_?[0-9])*`` from a digit at ``j``."""
    j += 1
    while j < mx:
        if digit(data[j]):
            j += 1
        elif data[j] == 95 and j + 1 < mx and digit(data[j + 1]):
            j += 2
        else:
            break
    return j


@numba.njit(cache=True)
def number_end(data, s, mx):
    """End of the number token at ``s`` as tokenize's ``Number`` reads it, or -1 where
    the regex would split it (a leading-zero integer, a name or dot right after it)."""
    b1 = data[s + 1] if s + 1 < mx else 0
    if data[s] == 48 and b1 in (120, 88, 98, 66, 111, 79):  # 0x 0b 0o
        j = s + 2
        while j < mx:
            c = data[j]
            if c == 95 and j + 1 < mx:
                c = data[j + 1]
                step = 2
            else:
                step = 1
            if b1 in (120, 88):
                good = digit(c) or (97 <= c <= 102) or (65 <= c <= 70)
            elif b1 in (98, 66):
                good = c == 48 or c == 49
            else:
                good = 48 <= c <= 55
            if not good:
                break
            j += step
        if j == s + 2:
            return -1
    else:
        j, whole, frac, exp = s, False, False, False
        if digit(data[j]):
            j = digits(data, j, mx)
            whole = True
        if j < mx and data[j] == 46:
            frac = True
            j += 1
            if j < mx and digit(data[j]):
                j = digits(data, j, mx)
            elif not whole:
                return -1
        if j < mx and (data[j] == 101 or data[j] == 69):
            t = j + 1
            if t < mx and (data[t] == 43 or data[t] == 45):
                t += 1
            if t < mx and digit(data[t]):
                j = digits(data, t, mx)
                exp = True
        imag = j < mx and (data[j] == 106 or data[j] == 74)
        if imag:
            j += 1
        if data[s] == 48 and not (frac or exp or imag):
            for k in range(s, j):
                if 49 <= data[k] <= 57:
                    return -1
    if j < mx and (name_byte(data[j]) or data[j] == 46 or data[j] >= 128):
        return -1
    return j


@numba.njit(cache=True, inline="always")
def prefix(data, s, e):
    """Whether [s, e) is a string prefix tokenize knows (b r u f br rb fr rf, any case)."""
    if e - s == 1:
        c = data[s] | 32
        return c == 98 or c == 114 or c == 117 or c == 102
    if e - s == 2:
        a, b = data[s] | 32, data[s + 1] | 32
        return (a == 114 and (b == 98 or b == 102)) or (b == 114 and (a == 98 or a == 102))
    return False


@numba.njit(cache=True)
def triple_end(data, k, mx, q):
    """End of a triple-quoted string's closing quotes from ``k`` on this line, or -1."""
    while k < mx:
        c = data[k]
        if c == 92:
            k += 2
        elif c == q and k + 2 < mx and data[k + 1] == q and data[k + 2] == q:
            return k + 3
        else:
            k += 1
    return -1
