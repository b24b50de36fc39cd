"""Phase-3 synthetic rewriting: prompts from seed files, and validation of the answers.

- :func:`load_templates`: prompt templates are YAML files (``operators/prompts/`` ships
  OSS-Instruct and WaveCoder's four tasks adapted to code files; a user folder may add or
  replace them). Placeholders: ``{language}``, ``{seed}``, ``{fence}``,
  ``{target_language}``, ``{target_fence}``.
- :class:`PromptBuilder`: seed files (with how many requests each should make) → request
  rows. The seed is 1–15 consecutive lines from a random start (Magicoder); the template is
  drawn by weight; every random choice comes from a generator seeded by the run seed, the
  wave and the seed file, so a re-run builds the same requests. Sampling settings, the seed
  lines and the template id travel with each row to the output.
- :func:`extract_code`, :class:`SyntaxChecker`, :class:`SynthValidator`: the answer's code
  (the fenced block in the output language, else the whole answer), parsed (Python ``ast``;
  tree-sitter grammars for the other languages), length-bounded, then decontaminated,
  hashed and signed with the phase-1 operators. A rejected row becomes a tombstone with
  its stage and reason, so it reaches the ledger.
"""

from __future__ import annotations

import ast
import dataclasses
import glob
import json
import os
import re
import string

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import xxhash
import yaml

from operators.schema import FILE_SCHEMA, conform, live_mask, mark_removed

PROMPTS_DIR = os.path.join(os.path.dirname(__file__), "prompts")
PLACEHOLDERS = {"language", "seed", "fence", "target_language", "target_fence"}

#: stages of the phase-3 ledger
GENERATION_STAGE = "synth_generation"
VALIDATION_STAGE = "synth_validation"

#: fence tags of the languages (lowercase language name otherwise)
FENCES = {"C++": "cpp", "C#": "csharp", "Shell": "bash", "Jupyter Notebook": "python",
          "Visual Basic": "vb", "Objective-C": "objectivec", "Emacs Lisp": "elisp"}
#: extra tags an answer may use for a language
FENCE_ALIASES = {"Python": {"py", "python3"}, "JavaScript": {"js", "jsx", "node"},
                 "TypeScript": {"ts", "tsx"}, "C++": {"c++", "cc", "hpp", "cxx"},
                 "C#": {"cs", "c#"}, "Shell": {"sh", "shell", "zsh"},
                 "Ruby": {"rb"}, "Rust": {"rs"}, "Kotlin": {"kt"}, "Go": {"golang"},
                 "Jupyter Notebook": {"py", "ipython"}}
#: file extensions of the outputs' synthetic paths
EXTENSIONS = {"Python": "py", "Java": "java", "C++": "cpp", "C": "c", "JavaScript": "js",
              "PHP": "php", "C#": "cs", "Go": "go", "TypeScript": "ts", "SQL": "sql",
              "Ruby": "rb", "Rust": "rs", "Jupyter Notebook": "py", "Scala": "scala",
              "Kotlin": "kt", "Shell": "sh", "Dart": "dart", "Swift": "swift"}
#: tree-sitter-language-pack grammar names
GRAMMARS = {"Java": "java", "C++": "cpp", "C": "c", "JavaScript": "javascript",
            "PHP": "php", "C#": "csharp", "Go": "go", "TypeScript": "typescript",
            "SQL": "sql", "Ruby": "ruby", "Rust": "rust", "Scala": "scala",
            "Kotlin": "kotlin", "Shell": "bash", "Dart": "dart", "Swift": "swift"}

#: provenance columns of a synthetic row, next to FILE_SCHEMA's
SYNTH_FIELDS = [
    pa.field("seed_id", pa.string()), pa.field("seed_lang", pa.string()),
    pa.field("seed_start_line", pa.int32()), pa.field("seed_lines", pa.int32()),
    pa.field("template", pa.string()), pa.field("wave", pa.int32()),
    pa.field("temperature", pa.float32()), pa.field("top_p", pa.float32()),
    pa.field("max_tokens", pa.int32()), pa.field("sampling_seed", pa.int64()),
    pa.field("model", pa.string()), pa.field("finish_reason", pa.string()),
    pa.field("prompt_tokens", pa.int32()), pa.field("output_tokens", pa.int32()),
]
SYNTH_SCHEMA = pa.schema(list(FILE_SCHEMA) + SYNTH_FIELDS)


def fence(lang: str) -> str:
    return FENCES.get(lang, lang.lower().replace(" ", ""))


@dataclasses.dataclass(frozen=True)
class Template:
    """One prompt template. ``output_language`` is ``seed`` (the answer is in the seed's
    language) or ``target`` (in the builder's target language: translation)."""

    id: str
    system: str
    user: str
    output_language: str = "seed"

    def __post_init__(self):
        if self.output_language not in ("seed", "target"):
            raise ValueError(f"template {self.id}: output_language must be seed or target")
        for part in (self.system, self.user):
            names = {f for _, f, _, _ in string.Formatter().parse(part) if f}
            if names - PLACEHOLDERS:
                raise ValueError(f"template {self.id}: unknown placeholders "
                                 f"{sorted(names - PLACEHOLDERS)}; known {sorted(PLACEHOLDERS)}")
        if "{seed}" not in self.user:
            raise ValueError(f"template {self.id}: the user message must contain {{seed}}")

    def messages(self, seed: str, language: str, target: str) -> list[dict]:
        # the seed is substituted last, so braces inside the code are left alone
        values = {"language": language, "fence": fence(language), "target_language": target,
                  "target_fence": fence(target), "seed": "\0SEED\0"}
        out = []
        if self.system.strip():
            out.append({"role": "system", "content": self.system.format(**values).strip()})
        user = self.user.format(**values).replace("\0SEED\0", seed)
        out.append({"role": "user", "content": user})
        return out


def load_templates(directory: str | None = None) -> dict[str, Template]:
    """The packaged templates, then those of ``directory`` (same id replaces)."""
    out = {}
    for where in [PROMPTS_DIR] + ([directory] if directory else []):
        files = sorted(glob.glob(os.path.join(where, "*.yaml")))
        if where == directory and not files:
            raise FileNotFoundError(f"no *.yaml prompt templates in {directory}")
        for path in files:
            with open(path) as f:
                raw = yaml.safe_load(f)
            try:
                t = Template(**raw)
            except TypeError as exc:
                raise ValueError(f"{path}: {exc}") from None
            out[t.id] = t
    return out


def seed_snippet(content: str, rng: np.random.Generator, min_lines: int = 1,
                 max_lines: int = 15, max_chars: int = 4000, tries: int = 8
                 ) -> tuple[int, int, str] | None:
    """(start line, lines, text): ``min_lines``–``max_lines`` consecutive lines from a
    random start, trailing lines dropped past ``max_chars``; None if every try is blank."""
    lines = content.splitlines()
    if not lines:
        return None
    for _ in range(tries):
        n = int(rng.integers(min_lines, max_lines + 1))
        n = min(n, len(lines))
        start = int(rng.integers(0, len(lines) - n + 1))
        chosen = lines[start:start + n]
        while len(chosen) > 1 and sum(len(x) + 1 for x in chosen) > max_chars:
            chosen.pop()
        text = "\n".join(chosen)[:max_chars]
        if text.strip():
            return start, len(chosen), text
    return None


def _uid(*parts) -> int:
    return xxhash.xxh3_64_intdigest(":".join(str(p) for p in parts).encode())


def hash_unit(ids: list, salt) -> np.ndarray:
    """A deterministic draw in [0, 1) per id (xxh3 of ``salt:id``)."""
    return np.array([_uid(salt, i) / 2.0 ** 64 for i in ids])


REQUEST_SCHEMA = pa.schema([
    pa.field("request_id", pa.string()), pa.field("lang", pa.string()),
    pa.field("seed_id", pa.string()), pa.field("seed_lang", pa.string()),
    pa.field("seed_start_line", pa.int32()), pa.field("seed_lines", pa.int32()),
    pa.field("template", pa.string()), pa.field("wave", pa.int32()),
    pa.field("messages_json", pa.large_string()),
    pa.field("temperature", pa.float32()), pa.field("top_p", pa.float32()),
    pa.field("max_tokens", pa.int32()), pa.field("sampling_seed", pa.int64()),
])


@dataclasses.dataclass
class PromptBuilder:
    """Seed files (``id``, ``content``, ``lang``, ``n_requests``) → request rows.

    Args:
        templates: id → :class:`Template` (see :func:`load_templates`).
        weights: template id → weight; a translation template is used only for seeds not
            already in ``target_language``.
        target_language: the output language of translation templates.
        wave: the generation round (part of every random choice and id).
        seed: the run seed.
        temperature, top_p, max_tokens: sampling settings (recorded per row).
        min_lines, max_lines, max_seed_chars: the seed snippet (Magicoder: 1–15 lines).
    """

    templates: dict
    weights: dict = dataclasses.field(default_factory=lambda: {"oss_instruct": 1.0})
    target_language: str = "Python"
    wave: int = 0
    seed: int = 0
    temperature: float = 0.8
    top_p: float = 0.95
    max_tokens: int = 1024
    min_lines: int = 1
    max_lines: int = 15
    max_seed_chars: int = 4000

    def __post_init__(self):
        unknown = set(self.weights) - set(self.templates)
        if unknown:
            raise ValueError(f"unknown prompt templates {sorted(unknown)}; "
                             f"known {sorted(self.templates)}")
        if not self.weights or min(self.weights.values()) < 0 or not sum(
                self.weights.values()) > 0:
            raise ValueError("template weights must be >= 0 with a positive sum")
        if not 1 <= self.min_lines <= self.max_lines:
            raise ValueError("need 1 <= min_lines <= max_lines")

    def _choose(self, rng: np.random.Generator, seed_lang: str) -> Template:
        ids = [t for t, w in sorted(self.weights.items()) if w > 0 and not (
            self.templates[t].output_language == "target"
            and seed_lang == self.target_language)]
        if not ids:  # only translation, and the seed is already in the target language
            ids = [t for t in sorted(self.templates) if
                   self.templates[t].output_language == "seed"][:1]
        w = np.array([self.weights.get(t, 1.0) for t in ids], dtype=float)
        return self.templates[ids[int(rng.choice(len(ids), p=w / w.sum()))]]

    def __call__(self, table: pa.Table) -> pa.Table:
        rows = {f.name: [] for f in REQUEST_SCHEMA}
        for r in table.select(["id", "content", "lang", "n_requests"]).to_pylist():
            for j in range(int(r["n_requests"] or 0)):
                key = _uid(self.seed, self.wave, r["id"], j)
                rng = np.random.default_rng(key)
                snip = seed_snippet(r["content"] or "", rng, self.min_lines, self.max_lines,
                                    self.max_seed_chars)
                if snip is None:
                    continue  # a blank seed file: no request (counted as not made)
                start, n_lines, text = snip
                tpl = self._choose(rng, r["lang"])
                out_lang = self.target_language if tpl.output_language == "target" \
                    else r["lang"]
                msgs = tpl.messages(text, r["lang"], self.target_language)
                for name, value in (
                        ("request_id", f"syn-{key:016x}"), ("lang", out_lang),
                        ("seed_id", r["id"]), ("seed_lang", r["lang"]),
                        ("seed_start_line", start + 1), ("seed_lines", n_lines),
                        ("template", tpl.id), ("wave", self.wave),
                        ("messages_json", json.dumps(msgs)),
                        ("temperature", self.temperature), ("top_p", self.top_p),
                        ("max_tokens", self.max_tokens),
                        ("sampling_seed", key & 0x7FFFFFFF)):
                    rows[name].append(value)
        return pa.table(rows, schema=REQUEST_SCHEMA)


_FENCE_RE = re.compile(
    r"^[ \t]*```[ \t]*([\w+#.-]*)[^\n]*\n(.*?)(^[ \t]*```[ \t]*$|\Z)", re.M | re.S)


def extract_code(answer: str, lang: str) -> tuple[str, str]:
    """(code, how): the longest fenced block tagged with the language (else untagged, else
    any tag): ``how="fenced"``, or ``"unclosed"`` when the answer ended inside it; with no
    fence, the whole answer (``how="whole"``)."""
    blocks = [(m.group(1).lower(), m.group(2), bool(m.group(3)))
              for m in _FENCE_RE.finditer(answer or "")]
    if not blocks:
        return (answer or "").strip("\n"), "whole"
    tags = {fence(lang), lang.lower()} | FENCE_ALIASES.get(lang, set())
    for want in (lambda t: t in tags, lambda t: t == "", lambda t: True):
        chosen = [(b, closed) for t, b, closed in blocks if want(t)]
        if chosen:
            code, closed = max(chosen, key=lambda x: len(x[0]))
            return code.strip("\n"), "fenced" if closed else "unclosed"
    raise AssertionError("unreachable")


class SyntaxChecker:
    """Does code parse? Python with ``ast``; other languages with a tree-sitter grammar
    from ``tree-sitter-language-pack`` (bundled grammars, no download). A language with no
    grammar is not checked (``None``)."""

    def __init__(self):
        self._parsers: dict = {}

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
        """True if it parses; an error text if not; None if the language is unchecked."""
        if lang in ("Python", "Jupyter Notebook"):
            try:
                ast.parse(code)
                return True
            except (SyntaxError, ValueError) as exc:
                return f"line {getattr(exc, 'lineno', '?')}: {getattr(exc, 'msg', exc)}"
        parser = self._parser(lang)
        if parser is None:
            return None
        root = parser.parse(code.encode("utf-8", "replace")).root_node
        if not root.has_error:
            return True
        bad = _first_error(root)
        if bad is None:
            return "parse error"
        what = f"missing {bad.type}" if bad.is_missing else "unexpected input"
        return f"line {bad.start_point[0] + 1}: {what}"


def _first_error(node):
    stack = [node]
    while stack:
        n = stack.pop()
        if n.is_error or n.is_missing:
            return n
        stack.extend(reversed(n.children))
    return None


@dataclasses.dataclass
class SynthValidator:
    """Generated rows (requests + generation columns) → :data:`SYNTH_SCHEMA` rows, rejected
    ones as tombstones (stage ``synth_generation`` for failed requests, ``synth_validation``
    otherwise; reasons ``empty``, ``truncated``, ``too_short``, ``too_long``,
    ``syntax_error``; decontamination's own stage and reason).

    Args:
        tokenizer: counts ``n_tokens`` of the extracted code (the flow's tokenizer).
        min_tokens, max_tokens: length bounds of a kept file.
        reject_truncated: code cut by the token limit is not a whole file (an answer cut
            after its closed code fence is kept).
        require_parse: reject code that does not parse (unchecked languages pass).
        redactor: phase 1's secret/PII redaction, applied to the extracted code first (a
            model can invent keys and addresses too).
        ops: operators run on the surviving rows in order (decontamination, content hash,
            MinHash signatures from phase 1).
    """

    tokenizer: str = "packaged:smollm2"
    min_tokens: int = 32
    max_tokens: int = 4096
    reject_truncated: bool = True
    require_parse: bool = True
    redactor: object = None
    ops: list = dataclasses.field(default_factory=list)

    def __post_init__(self):
        from operators.tokens import TokenCounter

        self.counter = TokenCounter(self.tokenizer)
        self.checker = SyntaxChecker()

    def __call__(self, table: pa.Table) -> pa.Table:
        n = table.num_rows
        answers = table.column("answer").to_pylist()
        langs = table.column("lang").to_pylist()
        found = [extract_code(a, lang) if a is not None else (None, None)
                 for a, lang in zip(answers, langs)]
        codes = [c for c, _ in found]
        t = table.rename_columns(["id" if c == "request_id" else c
                                  for c in table.column_names])
        ext = [EXTENSIONS.get(lang, "txt") for lang in langs]
        tpl = t.column("template").to_pylist()
        extra = {
            "content": pa.array(codes, pa.large_string()),
            "repo": pa.array([f"synthetic/{x}" for x in tpl], pa.string()),
            "path": pa.array([f"{i}.{e}" for i, e in zip(t.column("id").to_pylist(), ext)],
                             pa.string()),
            "source": pa.array(["synthetic"] * n, pa.string()),
            "ext": pa.array(ext, pa.string()),
            "size_bytes": pa.array([len(c.encode()) if c else 0 for c in codes], pa.int64()),
        }
        for name, col in extra.items():
            t = t.append_column(name, col) if name not in t.column_names else t
        t = conform(t, SYNTH_SCHEMA)
        failed = pc.equal(table.column("gen_status"), "failed")
        t = mark_removed(t, failed, GENERATION_STAGE, table.column("gen_error"),
                         table.column("gen_detail"))
        empty = pa.array([c is None or not c.strip() for c in codes])
        t = mark_removed(t, empty, VALIDATION_STAGE, "empty")
        if self.redactor is not None:
            t = self.redactor(t)
        if self.reject_truncated:  # cut inside the code (a closed fence is whole)
            cut = pc.and_(pc.equal(t.column("finish_reason"), "length"),
                          pa.array([how != "fenced" for _, how in found]))
            t = mark_removed(t, cut, VALIDATION_STAGE, "truncated",
                             "the answer reached the token limit inside the code")
        t = self.counter(t)
        ntok = pc.fill_null(t.column("n_tokens"), 0)
        t = mark_removed(t, pc.less(ntok, self.min_tokens), VALIDATION_STAGE, "too_short",
                         pc.cast(ntok, pa.string()))
        t = mark_removed(t, pc.greater(ntok, self.max_tokens), VALIDATION_STAGE, "too_long",
                         pc.cast(ntok, pa.string()))
        if self.require_parse:
            live = live_mask(t).to_numpy(zero_copy_only=False)
            bad, detail = np.zeros(n, dtype=bool), [None] * n
            content = t.column("content").to_pylist()
            for i in np.flatnonzero(live):
                res = self.checker.check(content[i], langs[i])
                if isinstance(res, str):
                    bad[i], detail[i] = True, res[:300]
            t = mark_removed(t, pa.array(bad), VALIDATION_STAGE, "syntax_error",
                             pa.array(detail, pa.string()))
        for op in self.ops:
            t = op(t)
        return t
