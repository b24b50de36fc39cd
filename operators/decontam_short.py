"""Decontamination of benchmark items too short for shingle matching.

An item with fewer than ``min_ngrams`` distinct 6-token shingles (about one MBPP solution
in six: ``def add(a, b): return a + b``) cannot be matched by the share of its shingles a
file holds: there are too few, and renaming one local variable breaks them all. Such an
item is matched as a whole instead: its code tokens (identifiers, numbers, strings, each
punctuation character; comments and whitespace dropped) must appear in a file as one
contiguous run, where the names the item binds (function, parameters, locals, loop and
comprehension variables, ``as`` targets, lambda parameters) may be renamed consistently and
every other token must be equal. So a verbatim or reformatted copy matches, and so does a
copy with renamed variables; the same shape with another callee, constant or operator does
not. Items of fewer than ``min_tokens`` tokens are left out: too generic to mean a copy.

Finding where to look stays cheap: each item has an *anchor*, a regex for its first tokens
(``def <name>(`` for a function: its name must survive, which a light edit keeps; else the
first three tokens, if one of them is an identifier no prose has; an item with neither is
left out). One RE2 alternation of all anchors picks a batch's candidate rows;
in those, Python finds the anchors and compares the tokens after each one.
"""

from __future__ import annotations

import builtins
import keyword
import re

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

_CODE = re.compile(r"#[^\n]*|[A-Za-z_]\w*|\d[\w.]*|\"(?:[^\"\\\n]|\\.)*\"|'(?:[^'\\\n]|\\.)*'"
                   r"|[^\s\w]")
_IDENT = re.compile(r"[A-Za-z_]\w*$")
_KEYWORDS = frozenset(keyword.kwlist) | {"function", "func", "fn", "fun", "var", "let", "const"}
_DEF = frozenset({"def", "function", "func", "fn", "fun", "sub"})
_DEF_ANY = re.compile(r"(?:def|function|func|fn|fun|sub)\s+([A-Za-z_]\w*)\s*\(")

# what a text binds, besides defined functions and their parameters
# (each starts with a literal, not ``\b``, so that ``re`` can skip ahead to it; a match
# inside a longer word is dropped after)
_ASSIGNED = re.compile(r"^[ \t]*([A-Za-z_]\w*(?:[ \t]*,[ \t]*[A-Za-z_]\w*)*)[ \t]*"
                       r"[-+*/%&|^@<>]{0,2}=(?!=)", re.M)
_LOOP = re.compile(r"for[ \t]+\(?((?:[A-Za-z_]\w*[ \t]*,[ \t]*)*[A-Za-z_]\w*)\)?[ \t]+in\b")
_AS = re.compile(r"as[ \t]+([A-Za-z_]\w*)")
_LAMBDA = re.compile(r"lambda[ \t]*([\w \t,*=]*):")
_NAMES = re.compile(r"[A-Za-z_]\w*")


def code_tokens(text: str) -> list[str]:
    """Identifiers, numbers, string literals and punctuation characters, without comments
    and whitespace."""
    return [t for t in _CODE.findall(text) if not t.startswith("#")]


def bound_names(text: str) -> set[str]:
    """Names a text binds: defined functions and classes and their parameters, assignment
    targets, loop and comprehension variables, ``as`` targets, lambda parameters."""
    from operators.decontam import defined_names

    names = set(defined_names(text))
    for rx in (_ASSIGNED, _LOOP, _AS, _LAMBDA):
        for m in rx.finditer(text):
            if m.start() and rx is not _ASSIGNED and (text[m.start() - 1].isalnum()
                                                      or text[m.start() - 1] == "_"):
                continue
            group = m.group(1).split("=")[0] if rx is _LAMBDA else m.group(1)
            names.update(n.lower() for n in _NAMES.findall(group))
    return {n for n in names if n not in _KEYWORDS and n not in ("self", "cls")}


class ShortItems:
    """The short items of a benchmark and their anchors (see the module docstring)."""

    def __init__(self, items: list[tuple[str, str]], min_tokens: int = 10,
                 renamable_tokens: int = 24):
        """``items``: (label, text) of the items to match whole. An item of fewer than
        ``renamable_tokens`` tokens whose other tokens are all keywords, builtins,
        punctuation and small numbers (``def strlen(s): return len(s)``) matches only
        verbatim: renamed, it is any code of that shape."""
        self.labels: list[str] = []
        self.tokens: list[list[str]] = []
        self.bound: list[frozenset] = []
        self.starts: list[int] = []  # the item token its anchor begins at
        self._by_name: dict[str, list[int]] = {}  # function name -> items defining it
        by_kw: dict[str, set[str]] = {}  # definition keyword -> function names (escaped)
        heads: dict[str, list[int]] = {}  # head anchor -> items
        for label, text in items:
            toks = code_tokens(text)
            if len(toks) < min_tokens:
                continue
            bound = frozenset(bound_names(text))
            if len(toks) < renamable_tokens and not _distinctive(toks, bound, text):
                bound = frozenset()  # a generic shape: only a verbatim copy counts
            start = _definition(toks)
            if start is None:
                head = _head_anchor(toks, bound)
                if head is None:
                    continue
                heads.setdefault(head, []).append(len(self.labels))
                start = 0
            else:
                by_kw.setdefault(toks[start], set()).add(re.escape(toks[start + 1]))
                self._by_name.setdefault(toks[start + 1], []).append(len(self.labels))
            self.starts.append(start)
            self.labels.append(label)
            self.tokens.append(toks)
            self.bound.append(bound)
        names = {kw: "|".join(sorted(ns)) for kw, ns in by_kw.items()}
        # for RE2, one branch per definition keyword and no \b (both slow it down 4x)
        branches = [rf"{kw}\s+(?:{ns})\s*\(" for kw, ns in names.items()]
        branches += [a.removeprefix(r"\b") for a in heads]
        self.pattern = "|".join(f"(?:{b})" for b in branches) or None
        # Python: the same per keyword, which then leads each pattern as a literal
        self._defs = [re.compile(rf"{kw}\s+({ns})\s*\(") for kw, ns in names.items()]
        # the other anchors, each with a literal word the text must hold first
        self._heads = [(re.compile(a), max((t for t in self.tokens[ks[0]][:3]
                                            if _codeish(t) and t.lower()
                                            not in self.bound[ks[0]]), key=len), ks)
                       for a, ks in heads.items()]

    def __len__(self) -> int:
        return len(self.labels)

    def candidates(self, content: pa.Array) -> np.ndarray:
        """Rows of a batch that hold some item's anchor (one RE2 pass)."""
        if self.pattern is None:
            return np.zeros(0, dtype=np.int64)
        hit = pc.fill_null(pc.match_substring_regex(content, self.pattern), False)
        return np.flatnonzero(hit.to_numpy(zero_copy_only=False))

    def find(self, text: str) -> int | None:
        """The first item ``text`` holds a copy of, or None: at each definition of a
        function some item defines, and at each match of the other anchors."""
        for rx in self._defs:
            for m in rx.finditer(text):
                for k in self._by_name.get(m.group(1), ()):
                    if self._at(text, m.start(), k):
                        return k
        for rx, word, ks in self._heads:
            if word in text:
                for m in rx.finditer(text):
                    for k in ks:
                        if self._at(text, m.start(), k):
                            return k
        return None

    def _at(self, text: str, pos: int, k: int) -> bool:
        toks = self.tokens[k]
        window = code_tokens(text[pos:pos + 4 * sum(map(len, toks)) + 400])
        return _same(toks[self.starts[k]:], window, self.bound[k])


def _definition(toks: list[str]) -> int | None:
    """Where the item defines a function (``def <name> (``: its anchor, the name
    literal), or None."""
    for i, t in enumerate(toks[:-2]):
        if t in _DEF and _IDENT.match(toks[i + 1]) and toks[i + 2] == "(":
            return i
    return None


def _head_anchor(toks: list[str], bound: frozenset) -> str | None:
    """A regex for an item without a definition: its first three tokens, bound names as
    any identifier; None when none of them is an identifier no prose has."""
    head = toks[:3]
    if not any(t.lower() not in bound and _codeish(t) for t in head):
        return None  # "return x +", "Return the": anywhere; not worth a look
    parts = [r"[A-Za-z_]\w*" if t.lower() in bound else re.escape(t) for t in head]
    return (r"\b" if _IDENT.match(head[0]) else "") + r"\s*".join(parts)


def _codeish(t: str) -> bool:
    """An identifier no prose has: with ``_``, a digit or a camel hump (``is_prime``,
    ``np2``, ``maxValue``), and not a keyword or builtin."""
    return bool(_IDENT.match(t)) and t not in _COMMON and (
        "_" in t.strip("_") or any(c.isdigit() for c in t)
        or (t[0].islower() and any(c.isupper() for c in t[1:])))


_COMMON = frozenset(dir(builtins)) | _KEYWORDS | {"0", "1", "2", "10", "100"}


def _distinctive(toks: list[str], bound: frozenset, text: str) -> bool:
    """Whether ``toks`` hold a token other than a bound name, keyword, builtin,
    punctuation or small number (a callee, an attribute, a constant, a string), or define
    a function of a telling name (``below_zero``, ``remove_duplicates``; not ``strlen``)."""
    for m in _DEF_ANY.finditer(text):
        if "_" in m.group(1).strip("_") or len(m.group(1)) >= 10:
            return True
    return any(t.lower() not in bound and t not in _COMMON and (len(t) > 2 or t[0] in "\"'")
               and (t[0].isalnum() or t[0] in "_\"'") for t in toks)


def _same(item: list[str], doc: list[str], bound: frozenset) -> bool:
    """Whether ``doc`` starts with ``item``, the item's bound names renamed one-to-one."""
    if len(doc) < len(item):
        return False
    fwd: dict[str, str] = {}
    back: dict[str, str] = {}
    for t, d in zip(item, doc):
        if t.lower() in bound:
            if not _IDENT.match(d) or d in _KEYWORDS:
                return False
            if fwd.setdefault(t, d) != d or back.setdefault(d, t) != t:
                return False
        elif t != d:
            return False
    return True
