"""Compiled counts for the lint score, in one pass over a batch's UTF-8 content buffer:
per Python file, the tokens ``tokenize.generate_tokens`` yields, how many of them are
comments, and the module's statements (every ``ast.stmt`` that ``ast.parse`` builds).

The scan follows CPython 3.11's ``tokenize._tokenize`` line by line (indentation and
dedent checks, blank and comment-only lines, strings with their prefixes, triple-quoted
strings across lines, numbers as its ``Number`` pattern reads them, the exact operator
tokens by longest match (:mod:`operators.kernels.pylex_lexemes`), backslash continuations,
the implicit NEWLINE at the end), with no Python object per token. Statements are read off the logical lines at bracket depth 0:
a simple line holds as many statements as it has non-empty ``;``-separated parts; a
compound header (``if``, ``elif``, ``for``, ``while``, ``try``, ``with``, ``def``,
``class``, ``async``) is one more, its clauses (``else``, ``except``, ``finally``, a
``match`` block's ``case``) none, a decorator none, and a body on the header's own line
counts as a simple line after the header's colon.

A file the scan is not sure of comes back with ``ok`` false and is counted by the plain
forms (:func:`operators.filters.lint.statements`, :func:`~operators.filters.lint.comment_ratio`):
any character ``tokenize`` would report as an error token (non-ASCII outside strings and
comments included), a lone carriage return, a NUL byte, a single-quoted string continued
with a backslash, a number the regex would split, an indentation error, an unterminated
string or bracket, a ``lambda`` at depth 0 in a compound header, and a ``case`` line that
could be either a pattern or a subscript. ``tests/test_lint.py`` holds the scan equal to
the plain forms on real files and on edge cases.
"""

from __future__ import annotations

import numba
import numpy as np

from operators.kernels.pylex_lexemes import (ONE_OPS, THREE_OPS, TWO_OPS, digit,
                                             name_byte, number_end, pack, packed, prefix,
                                             triple_end)


_HEADERS = tuple(pack(w) for w in (b"if", b"elif", b"for", b"while", b"try", b"with",
                                    b"def", b"class", b"async"))
_ELSE, _EXCEPT, _FINALLY = pack(b"else"), pack(b"except"), pack(b"finally")
_CASE, _LAMBDA = pack(b"case"), pack(b"lambda")

#: the kinds of a logical line, by its first token
_SIMPLE, _HEADER, _CLAUSE, _DECORATOR, _CASE_LINE = 0, 1, 2, 3, 4
#: what follows ``case`` as a line's second token: a bracket or something else
_OTHER, _BRACKET = 0, 1


@numba.njit(cache=True, inline="always")
def _line_statements(kind, colon, parts):
    """Statements in a finished logical line, or -1 where it cannot be read: a compound
    header or clause without its colon."""
    if kind == _SIMPLE:
        return parts
    if kind == _DECORATOR:
        return 0
    if kind == _CASE_LINE:
        return parts if colon else 1  # a clause's body, or a call such as case(x)
    if not colon:
        return -1
    return parts + (1 if kind == _HEADER else 0)


@numba.njit(cache=True)
def _scan(data, s, e, indents):
    """(tokens, comment tokens, statements, ok) of the text in [s, e)."""
    for k in range(s, e):
        if data[k] == 0 or (data[k] == 13 and (k + 1 >= e or data[k + 1] != 10)):
            return 0, 0, 0, False
    tokens = comments = stmts = 0
    nind, parenlev, continued, in_str = 1, 0, False, 0
    indents[0] = 0
    # the logical line: tokens so far, kind, header colon seen, parts, an open part,
    # what follows ``case``, a depth-0 "=" before the colon
    lt, kind, colon, parts, open_part, second, assign = 0, 0, False, 0, False, 0, False
    ln_s = ln_e = s
    nxt = s
    while True:
        last_s, last_e = ln_s, ln_e
        ln_s = nxt
        k = nxt
        while k < e and data[k] != 10:
            k += 1
        ln_e = k + 1 if k < e else e
        nxt = ln_e
        empty = ln_s == ln_e
        pos, mx = ln_s, ln_e
        if in_str:
            if empty:
                return 0, 0, 0, False
            end = triple_end(data, pos, mx, in_str)
            if end < 0:
                continue
            pos, in_str = end, 0
            tokens += 1
        elif parenlev == 0 and not continued:
            if empty:
                break
            column = 0
            while pos < mx:
                c = data[pos]
                if c == 32:
                    column += 1
                elif c == 9:
                    column = (column // 8 + 1) * 8
                elif c == 12:
                    column = 0
                else:
                    break
                pos += 1
            if pos == mx:
                break
            c = data[pos]
            if c == 35 or c == 13 or c == 10:
                if c == 35:
                    tokens += 1
                    comments += 1
                tokens += 1
                continue
            if column > indents[nind - 1]:
                if nind == indents.shape[0]:
                    return 0, 0, 0, False
                indents[nind] = column
                nind += 1
                tokens += 1
            while column < indents[nind - 1]:
                found = False
                for j in range(nind):
                    found = found or indents[j] == column
                if not found:
                    return 0, 0, 0, False
                nind -= 1
                tokens += 1
        else:
            if empty:
                return 0, 0, 0, False
            continued = False
        while pos < mx:
            st = pos
            while st < mx and (data[st] == 32 or data[st] == 9 or data[st] == 12):
                st += 1
            if st == mx:
                break
            c = data[st]
            # a significant token: its kind for the statement count
            word, is_open, is_colon, is_semi, is_assign, is_dot = -2, False, False, False, False, False
            if c == 10 or c == 13:
                tokens += 1
                pos = st + (1 if c == 10 else 2)
                if parenlev == 0 and lt:  # NEWLINE: the logical line ends
                    got = _line_statements(kind, colon, parts)
                    if got < 0:
                        return 0, 0, 0, False
                    stmts, lt = stmts + got, 0
                continue
            if c == 35:
                k = st
                while k < mx and data[k] != 10 and data[k] != 13:
                    k += 1
                tokens += 1
                comments += 1
                pos = k
                continue
            if c == 92:
                if st + 1 < mx and data[st + 1] == 10:
                    continued, pos = True, st + 2
                elif st + 2 < mx and data[st + 1] == 13 and data[st + 2] == 10:
                    continued, pos = True, st + 3
                else:
                    return 0, 0, 0, False
                continue
            if c >= 128:
                return 0, 0, 0, False
            if digit(c) or (c == 46 and st + 1 < mx and digit(data[st + 1])):
                end = number_end(data, st, mx)
                if end < 0:
                    return 0, 0, 0, False
            elif name_byte(c) or c == 34 or c == 39:
                q = st
                if c != 34 and c != 39:
                    while q < mx and name_byte(data[q]):
                        q += 1
                    if not (q < mx and (data[q] == 34 or data[q] == 39) and prefix(data, st, q)):
                        word = packed(data, st, q)
                        q = -1
                end = q
                if q >= 0:  # a string at the quote q
                    qc = data[q]
                    if q + 2 < mx and data[q + 1] == qc and data[q + 2] == qc:
                        end = triple_end(data, q + 3, mx, qc)
                        if end < 0:
                            in_str, end = qc, mx
                            tokens -= 1  # counted when it closes
                    else:
                        k = q + 1
                        end = -1
                        while k < mx:
                            b = data[k]
                            if b == qc:
                                end = k + 1
                                break
                            if b == 10 or (b == 92 and k + 1 < mx and (data[k + 1] == 10 or data[k + 1] == 13)):
                                break
                            k += 2 if b == 92 else 1
                        if end < 0:
                            return 0, 0, 0, False
                else:
                    end = st
                    while end < mx and name_byte(data[end]):
                        end += 1
            elif ONE_OPS[c] or (st + 1 < mx and TWO_OPS[c * 256 + data[st + 1]]):
                n = 1 if ONE_OPS[c] else 0
                if st + 1 < mx and TWO_OPS[c * 256 + data[st + 1]]:
                    n = 2
                    if st + 2 < mx and packed(data, st, st + 3) in THREE_OPS:
                        n = 3
                elif c == 46 and st + 2 < mx and data[st + 1] == 46 and data[st + 2] == 46:
                    n = 3
                end = st + n
                if parenlev == 0:
                    is_open = c == 40 or c == 91 or c == 123
                    is_colon = n == 1 and c == 58
                    is_semi = c == 59
                    # "=" or an augmented assignment (not == != <= >= :=)
                    is_assign = data[st + n - 1] == 61 and (
                        n != 2 or not (c == 61 or c == 33 or c == 60 or c == 62 or c == 58))
                    is_dot = n == 1 and c == 46
                if c == 40 or c == 91 or c == 123:
                    parenlev += 1
                elif c == 41 or c == 93 or c == 125:
                    parenlev -= 1
            else:
                return 0, 0, 0, False
            tokens += 1
            pos = end
            # the statement count: ``word`` is the packed name (-2: not a name)
            depth0 = parenlev == 0 or is_open
            if lt == 0:
                colon, assign, second, open_part = False, False, _OTHER, False
                parts = 0
                kind = _SIMPLE
                if word in _HEADERS:
                    kind = _HEADER
                elif word == _ELSE or word == _EXCEPT or word == _FINALLY:
                    kind = _CLAUSE
                elif word == _CASE:
                    kind = _CASE_LINE
                elif c == 64:
                    kind = _DECORATOR
                if kind == _SIMPLE:
                    parts, open_part = 1, True
            elif kind == _SIMPLE or colon:
                if is_semi:
                    open_part = False
                elif not open_part:
                    parts, open_part = parts + 1, True
            elif kind == _DECORATOR:
                pass
            elif kind == _CASE_LINE and lt == 1 and (is_colon or is_dot or is_assign):
                kind = _SIMPLE  # case: int = 1, case.x = ..., case = ..., case += ...
                parts, open_part = 1, not is_semi
            elif depth0 and is_colon:
                colon = True
                if kind == _CASE_LINE and (second == _BRACKET or assign):
                    return 0, 0, 0, False  # case[0]: int = 1, or case [0]: ...?
            elif depth0 and word == _LAMBDA:
                return 0, 0, 0, False
            elif kind == _CASE_LINE and lt == 1 and is_open:
                second = _BRACKET
            elif depth0 and is_assign:
                assign = True
            elif kind == _CASE_LINE and depth0 and is_semi:
                return 0, 0, 0, False
            lt += 1
            if in_str:
                break
    if parenlev != 0 or continued or in_str:
        return 0, 0, 0, False
    if last_e > last_s and data[last_e - 1] != 10 and data[last_e - 1] != 13:
        k = last_s
        while k < last_e and (data[k] == 32 or 9 <= data[k] <= 13 or 28 <= data[k] <= 31):
            k += 1
        if k < last_e and data[k] >= 128:
            return 0, 0, 0, False  # str.strip() may strip a Unicode space
        if not (k < last_e and data[k] == 35):
            tokens += 1  # the implicit NEWLINE
            if lt:
                got = _line_statements(kind, colon, parts)
                if got < 0:
                    return 0, 0, 0, False
                stmts, lt = stmts + got, 0
    if lt:
        return 0, 0, 0, False
    return tokens + nind, comments, stmts, True  # the DEDENTs left, and ENDMARKER


@numba.njit(cache=True)
def python_counts(data, offsets, rows):
    """Per row in ``rows``: tokens, comment tokens, statements, and whether the scan
    stands for the plain forms (see the module's docstring)."""
    n = rows.shape[0]
    tokens = np.zeros(n, dtype=np.int64)
    comments = np.zeros(n, dtype=np.int64)
    stmts = np.zeros(n, dtype=np.int64)
    ok = np.zeros(n, dtype=np.bool_)
    indents = np.zeros(256, dtype=np.int64)
    for i in range(n):
        r = rows[i]
        tokens[i], comments[i], stmts[i], ok[i] = _scan(data, offsets[r], offsets[r + 1],
                                                        indents)
    return tokens, comments, stmts, ok
