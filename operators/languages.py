"""The paper's 18 target languages, their The Stack v1 names and file extensions.

Canonical language names are the display names The Stack v1 uses in its ``lang`` column
(``"C++"``, ``"C#"``, ``"Jupyter Notebook"``, ...). Its directory names under ``data/``
are lowercase slugs (``c++``, ``c-sharp``, ``jupyter-notebook``); both map here.
"""

from __future__ import annotations

import posixpath

#: Arctic-SnowCoder's phase-1 languages (RECIPE.md), in the paper's order.
PAPER_LANGUAGES: tuple[str, ...] = (
    "Python", "Java", "C++", "C", "JavaScript", "PHP", "C#", "Go", "TypeScript", "SQL",
    "Ruby", "Rust", "Jupyter Notebook", "Scala", "Kotlin", "Shell", "Dart", "Swift",
)

#: Extensions per language (lowercase, with the dot), from The Stack v1's language map
#: restricted to the common ones. The first language listed for an extension wins.
EXTENSIONS: dict[str, tuple[str, ...]] = {
    # not .pyx/.pxd/.pxi: The Stack files those under Cython, which is not Python (the
    # compiler and the syntax gate reject them)
    "Python": (".py", ".pyi", ".pyw"),
    "Java": (".java",),
    "C++": (".cpp", ".cc", ".cxx", ".c++", ".hpp", ".hh", ".hxx", ".h++", ".inl", ".ipp", ".tcc"),
    "C": (".c", ".h"),
    "JavaScript": (".js", ".mjs", ".cjs", ".jsx"),
    "PHP": (".php", ".phtml", ".php3", ".php4", ".php5"),
    "C#": (".cs", ".csx"),
    "Go": (".go",),
    "TypeScript": (".ts", ".tsx", ".mts", ".cts"),
    "SQL": (".sql",),
    "Ruby": (".rb", ".rake", ".gemspec"),
    "Rust": (".rs",),
    "Jupyter Notebook": (".ipynb",),
    "Scala": (".scala", ".sc"),
    "Kotlin": (".kt", ".kts"),
    "Shell": (".sh", ".bash", ".zsh", ".ksh"),
    "Dart": (".dart",),
    "Swift": (".swift",),
}

_EXT_TO_LANG: dict[str, str] = {}
for _lang, _exts in EXTENSIONS.items():
    for _ext in _exts:
        _EXT_TO_LANG.setdefault(_ext, _lang)

_CANON_BY_KEY: dict[str, str] = {}
for _lang in PAPER_LANGUAGES:
    _CANON_BY_KEY[_lang.lower()] = _lang
# The Stack v1 directory slugs and common aliases.
_CANON_BY_KEY.update({
    "c-sharp": "C#", "csharp": "C#", "cpp": "C++", "jupyter-notebook": "Jupyter Notebook",
    "jupyter": "Jupyter Notebook", "ipynb": "Jupyter Notebook", "bash": "Shell", "sh": "Shell",
    "js": "JavaScript", "ts": "TypeScript", "py": "Python", "golang": "Go",
})

_SLUG: dict[str, str] = {
    "C++": "c++", "C#": "c-sharp", "Jupyter Notebook": "jupyter-notebook",
}


def canonical_language(name: str | None) -> str | None:
    """The canonical name of a language given any spelling, or ``name`` unchanged if unknown.

    ``None`` and the empty string give ``None``.
    """
    if not name:
        return None
    return _CANON_BY_KEY.get(name.strip().lower(), name.strip())


def language_from_path(path: str | None) -> str | None:
    """Language guessed from a file's extension, ``None`` when the extension is unknown."""
    if not path:
        return None
    ext = posixpath.splitext(path.lower())[1]
    return _EXT_TO_LANG.get(ext)


def stack_slug(lang: str) -> str:
    """The Stack v1 directory name of a canonical language (``data/<slug>/``)."""
    return _SLUG.get(lang, lang.lower())


def validate_languages(langs: list[str]) -> list[str]:
    """Canonicalise a configured language list; unknown names raise with the valid ones."""
    out = []
    for name in langs:
        canon = canonical_language(name)
        if canon not in PAPER_LANGUAGES and canon not in EXTENSIONS:
            raise ValueError(
                f"unknown language {name!r}; known: {', '.join(PAPER_LANGUAGES)}")
        out.append(canon)
    return out
