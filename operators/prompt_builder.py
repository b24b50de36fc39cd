"""Phase-3 prompts: templates and the requests built from seed files.

- :func:`load_templates`: prompt templates are YAML files (``operators/prompts/`` ships
  OSS-Instruct, WaveCoder's four tasks adapted to code files, and SwallowCode's two-step
  rewrite SGCR → SCOR; a user folder may add or replace them). Placeholders:
  ``{language}``, ``{seed}``, ``{fence}``, ``{target_language}``, ``{target_fence}``,
  ``{style_guide}`` (:data:`STYLE_GUIDES`).
- :class:`PromptBuilder`: seed files (with how many requests each should make) → request
  rows. The template is drawn by weight; the seed is 1–15 consecutive lines from a random
  start (Magicoder) or the whole file (``seed_scope: file``). A template with ``then``
  makes a chained request: the follow-up's messages travel with the row and receive the
  first answer's code (:func:`operators.chain.next_step`); every random choice comes from a generator seeded by the run seed, the
  wave and the seed file, so a re-run builds the same requests. Sampling settings, the seed
  lines and the template id travel with each row to the output.
"""

from __future__ import annotations

import dataclasses
import glob
import json
import os
import string

import numpy as np
import pyarrow as pa
import xxhash
import yaml

PROMPTS_DIR = os.path.join(os.path.dirname(__file__), "prompts")
PLACEHOLDERS = {"language", "seed", "fence", "target_language", "target_fence", "style_guide"}

#: the style guide an answer is asked to follow, per language (SwallowCode's SGCR rewrites
#: to the language's style guide: PEP 8 for Python); ``{style_guide}`` in a template
STYLE_GUIDES = {
    "Python": "PEP 8 and the Google Python Style Guide (docstrings, type hints)",
    "Java": "the Google Java Style Guide", "Kotlin": "the Kotlin coding conventions",
    "JavaScript": "the Airbnb JavaScript Style Guide",
    "TypeScript": "the Google TypeScript Style Guide", "C++": "the Google C++ Style Guide",
    "C": "the Linux kernel coding style", "C#": "Microsoft's C# coding conventions",
    "Go": "Effective Go, formatted by gofmt", "Rust": "the Rust Style Guide (rustfmt)",
    "Ruby": "the community Ruby Style Guide (RuboCop)", "PHP": "PSR-12",
    "Swift": "the Swift API Design Guidelines", "Scala": "the Scala Style Guide",
    "Shell": "the Google Shell Style Guide", "SQL": "Simon Holywell's SQL Style Guide",
    "Dart": "Effective Dart", "Jupyter Notebook": "PEP 8",
}
#: where a follow-up template takes the previous step's code (``{seed}`` of the follow-up)
PREVIOUS = "\0SEED\0"


def style_guide(lang: str) -> str:
    return STYLE_GUIDES.get(lang, f"the most widely used {lang} style guide")

#: fence tags of the languages (lowercase language name otherwise)
FENCES = {"C++": "cpp", "C#": "csharp", "Shell": "bash", "Jupyter Notebook": "python",
          "Visual Basic": "vb", "Objective-C": "objectivec", "Emacs Lisp": "elisp"}


def fence(lang: str) -> str:
    return FENCES.get(lang, lang.lower().replace(" ", ""))


@dataclasses.dataclass(frozen=True)
class Template:
    """One prompt template. ``output_language`` is ``seed`` (the answer is in the seed's
    language) or ``target`` (in the builder's target language: translation).
    ``seed_scope``: ``snippet`` (1–15 lines, Magicoder) or ``file`` (the whole file, its
    first lines up to ``max_seed_chars``; SwallowCode rewrites whole files). ``then``: a
    follow-up template whose ``{seed}`` is this step's code (SGCR then SCOR)."""

    id: str
    system: str
    user: str
    output_language: str = "seed"
    seed_scope: str = "snippet"
    then: str | None = None

    def __post_init__(self):
        if self.output_language not in ("seed", "target"):
            raise ValueError(f"template {self.id}: output_language must be seed or target")
        if self.seed_scope not in ("snippet", "file"):
            raise ValueError(f"template {self.id}: seed_scope must be snippet or file")
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
                  "target_fence": fence(target), "seed": PREVIOUS,
                  "style_guide": style_guide(language)}
        out = []
        if self.system.strip():
            out.append({"role": "system", "content": self.system.format(**values).strip()})
        user = self.user.format(**values).replace(PREVIOUS, seed)
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


def seed_file(content: str, max_chars: int = 4000) -> tuple[int, int, str] | None:
    """(1, lines, text): the whole file, or its first lines up to ``max_chars``; None if
    blank."""
    lines = content.splitlines()
    chosen, size = [], 0
    for line in lines:
        if chosen and size + len(line) + 1 > max_chars:
            break
        chosen.append(line)
        size += len(line) + 1
    text = "\n".join(chosen)[:max_chars]
    return (0, len(chosen), text) if text.strip() else None


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
    pa.field("stop", pa.list_(pa.string())),
    # a chained rewrite's second step: its template, and its messages with the placeholder
    # PREVIOUS where the first answer's code goes (null: one step)
    pa.field("next_template", pa.string()),
    pa.field("next_messages_json", pa.large_string()),
])

#: where an answer's code block ends: generation stops there (the closing fence is kept),
#: since nothing after the block is used
CODE_END = "\n```\n"


@dataclasses.dataclass
class PromptSettings:
    """What a prompt asks for (phase 3's settings extend these: ``phase3.templates``, …).

    Args:
        templates: template id → weight (packaged: oss_instruct, summarise, generate,
            translate, repair); a translation template is used only for seeds not already
            in ``target_language``.
        templates_dir: a folder of ``*.yaml`` templates that adds or replaces templates.
        target_language: the output language of translation templates.
        temperature, top_p, max_tokens: sampling settings (recorded per row).
        stop_after_code: end each answer at its first closing code fence. Only the code
            is kept, and small models in particular go on explaining or repeating it to
            the token limit: on the embedded SmolLM2 wave, 18 of 32 answers ran to 1,024
            tokens, 82% of the tokens generated.
        min_lines, max_lines, max_seed_chars: the seed snippet (Magicoder: 1–15 lines) and
            a character cap.
    """

    templates: dict = dataclasses.field(default_factory=lambda: {"oss_instruct": 1.0})
    templates_dir: str | None = None
    target_language: str = "Python"
    temperature: float = 0.8
    top_p: float = 0.95
    max_tokens: int = 1024
    stop_after_code: bool = True
    min_lines: int = 1
    max_lines: int = 15
    max_seed_chars: int = 4000

    def prompt_settings(self) -> dict:
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(PromptSettings)}


@dataclasses.dataclass
class PromptBuilder(PromptSettings):
    """Seed files (``id``, ``content``, ``lang``, ``n_requests``) → request rows, with the
    :class:`PromptSettings`, in generation round ``wave`` (part of every random choice and
    id) under the run's ``seed``. ``library`` holds the loaded templates by id."""

    wave: int = 0
    seed: int = 0

    def __post_init__(self):
        self.library = load_templates(self.templates_dir)
        self.templates = {str(k): float(v) for k, v in dict(self.templates).items()}
        unknown = set(self.templates) - set(self.library)
        if unknown:
            raise ValueError(f"unknown prompt templates {sorted(unknown)}; "
                             f"known {sorted(self.library)}")
        if not self.templates or min(self.templates.values()) < 0 or not sum(
                self.templates.values()) > 0:
            raise ValueError("template weights must be >= 0 with a positive sum")
        if not 1 <= self.min_lines <= self.max_lines:
            raise ValueError("need 1 <= min_lines <= max_lines")
        for t in self.library.values():
            nxt = self.library.get(t.then) if t.then else None
            if t.then and nxt is None:
                raise ValueError(f"template {t.id}: then: unknown template {t.then!r}")
            if nxt is not None and (nxt.then or nxt.output_language != "seed"):
                raise ValueError(f"template {t.id}: its follow-up {nxt.id} must answer in "
                                 "the language it is given and have no follow-up itself")

    @property
    def chained_share(self) -> float:
        """The share of requests (by template weight) that are chained rewrites."""
        return sum(w for t, w in self.templates.items() if self.library[t].then) / sum(
            self.templates.values())

    def _choose(self, rng: np.random.Generator, seed_lang: str) -> Template:
        ids = [t for t, w in sorted(self.templates.items()) if w > 0 and not (
            self.library[t].output_language == "target"
            and seed_lang == self.target_language)]
        if not ids:  # only translation, and the seed is already in the target language
            ids = [t for t in sorted(self.library) if
                   self.library[t].output_language == "seed"][:1]
        w = np.array([self.templates.get(t, 1.0) for t in ids], dtype=float)
        return self.library[ids[int(rng.choice(len(ids), p=w / w.sum()))]]

    def __call__(self, table: pa.Table) -> pa.Table:
        rows = {f.name: [] for f in REQUEST_SCHEMA}
        for r in table.select(["id", "content", "lang", "n_requests"]).to_pylist():
            for j in range(int(r["n_requests"] or 0)):
                key = _uid(self.seed, self.wave, r["id"], j)
                rng = np.random.default_rng(key)
                tpl = self._choose(rng, r["lang"])
                snip = (seed_file(r["content"] or "", self.max_seed_chars)
                        if tpl.seed_scope == "file" else
                        seed_snippet(r["content"] or "", rng, self.min_lines, self.max_lines,
                                     self.max_seed_chars))
                if snip is None:
                    continue  # a blank seed file: no request (counted as not made)
                start, n_lines, text = snip
                out_lang = self.target_language if tpl.output_language == "target" \
                    else r["lang"]
                msgs = tpl.messages(text, r["lang"], self.target_language)
                nxt = self.library[tpl.then] if tpl.then else None
                for name, value in (
                        ("request_id", f"syn-{key:016x}"), ("lang", out_lang),
                        ("seed_id", r["id"]), ("seed_lang", r["lang"]),
                        ("seed_start_line", start + 1), ("seed_lines", n_lines),
                        ("template", f"{tpl.id}>{nxt.id}" if nxt else tpl.id),
                        ("wave", self.wave),
                        ("messages_json", json.dumps(msgs)),
                        ("temperature", self.temperature), ("top_p", self.top_p),
                        ("max_tokens", self.max_tokens),
                        ("sampling_seed", key & 0x7FFFFFFF),
                        ("stop", [CODE_END] if self.stop_after_code else []),
                        ("next_template", nxt.id if nxt else None),
                        ("next_messages_json", json.dumps(nxt.messages(
                            PREVIOUS, out_lang, self.target_language)) if nxt else None)):
                    rows[name].append(value)
        return pa.table(rows, schema=REQUEST_SCHEMA)
