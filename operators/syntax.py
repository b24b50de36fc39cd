"""Does code parse? One checker for phase 1's syntax filter and phase 3's validation.

Python goes through the interpreter's own compiler (``compile``: the parser and the checks
that follow it, such as ``return`` outside a function), so a file passes exactly when
``python -m py_compile`` would accept it under this Python. The other languages go through
a tree-sitter grammar from ``tree-sitter-language-pack`` (bundled in the wheel, no
download); a file fails when the parse tree has error or missing nodes. Grammars lag their
languages and do not see a preprocessor: ``tolerance`` lets a file through when no more
than that share of its lines holds an error (0: any error fails). A language with no
grammar is not checked.
"""

from __future__ import annotations

import warnings

#: tree-sitter-language-pack grammar names
GRAMMARS = {"Java": "java", "C++": "cpp", "C": "c", "JavaScript": "javascript",
            "PHP": "php", "C#": "csharp", "Go": "go", "TypeScript": "typescript",
            "SQL": "sql", "Ruby": "ruby", "Rust": "rust", "Scala": "scala",
            "Kotlin": "kotlin", "Shell": "bash", "Dart": "dart", "Swift": "swift"}
#: languages checked by Python's own compiler
PYTHON = ("Python", "Jupyter Notebook")


class SyntaxChecker:
    """``check(code, lang)``: True if the code parses, an error text if not, None if the
    language is not checked. ``tolerance``: the share of lines a tree-sitter error may
    touch before the file fails (Python is never tolerant: its compiler is exact)."""

    def __init__(self, tolerance: float = 0.0):
        if not 0.0 <= tolerance < 1.0:
            raise ValueError("tolerance must be in [0, 1)")
        self.tolerance = tolerance
        self._parsers: dict = {}

    def __getstate__(self):  # parsers are native objects: each process makes its own
        return {"tolerance": self.tolerance, "_parsers": {}}

    def _parser(self, lang: str):
        name = GRAMMARS.get(lang)
        if name is None:
            return None
        if name not in self._parsers:
            try:
                from tree_sitter_language_pack import get_parser

                self._parsers[name] = get_parser(name)
            except Exception:  # noqa: BLE001 - a grammar that is not installed
                self._parsers[name] = None
        return self._parsers[name]

    def check(self, code: str, lang: str) -> str | None | bool:
        if lang in PYTHON:
            try:
                with warnings.catch_warnings():  # invalid escapes and the like: not errors
                    warnings.simplefilter("ignore")
                    compile(code, "<file>", "exec", dont_inherit=True)
                return True
            except (SyntaxError, ValueError) as exc:  # ValueError: a NUL byte
                return f"line {getattr(exc, 'lineno', '?')}: {getattr(exc, 'msg', exc)}"
            except (MemoryError, RecursionError) as exc:  # nesting past the compiler's limits
                return f"too deeply nested to compile ({type(exc).__name__})"
        parser = self._parser(lang)
        if parser is None:
            return None
        data = code.encode("utf-8", "replace")
        root = parser.parse(data).root_node
        if not root.has_error:
            return True
        errors = _errors(root)
        if self.tolerance:
            lines = set()
            for n in errors:
                lines.update(range(n.start_point[0], n.end_point[0] + 1))
            if len(lines) <= self.tolerance * (data.count(b"\n") + 1):
                return True
        if not errors:
            return "parse error"
        bad = errors[0]
        what = f"missing {bad.type}" if bad.is_missing else "unexpected input"
        return f"line {bad.start_point[0] + 1}: {what}"


def _errors(node) -> list:
    """The error and missing nodes under ``node``, in document order (not descending into
    an error node)."""
    out, stack = [], [node]
    while stack:
        n = stack.pop()
        if n.is_error or n.is_missing:
            out.append(n)
            continue
        if n.has_error:
            stack.extend(reversed(n.children))
    return out
