"""Phase-3 synthetic rewriting: validation of the answers (the prompts are
:mod:`operators.prompt_builder`).

- :func:`extract_code`, :class:`SynthValidator`: the answer's code
  (the fenced block in the output language, else the whole answer), parsed
  (:class:`operators.syntax.SyntaxChecker`), length-bounded, then decontaminated,
  hashed and signed with the phase-1 operators. A rejected row becomes a tombstone with
  its stage and reason, so it reaches the ledger.
"""

from __future__ import annotations

import dataclasses
import re

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from operators.judge import JUDGE_FIELDS
from operators.prompt_builder import fence
from operators.syntax import SyntaxChecker
from operators.schema import FILE_SCHEMA, conform, live_mask, mark_removed


#: stages of the phase-3 ledger
GENERATION_STAGE = "synth_generation"
VALIDATION_STAGE = "synth_validation"

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
#: provenance columns of a synthetic row, next to FILE_SCHEMA's
SYNTH_FIELDS = [
    pa.field("seed_id", pa.string()), pa.field("seed_lang", pa.string()),
    pa.field("seed_start_line", pa.int32()), pa.field("seed_lines", pa.int32()),
    pa.field("template", pa.string()), pa.field("wave", pa.int32()),
    pa.field("temperature", pa.float32()), pa.field("top_p", pa.float32()),
    pa.field("max_tokens", pa.int32()), pa.field("sampling_seed", pa.int64()),
    pa.field("model", pa.string()), pa.field("finish_reason", pa.string()),
    pa.field("prompt_tokens", pa.int32()), pa.field("output_tokens", pa.int32()),
    # a chained rewrite's first step (null for one step; the counts above are the last's)
    pa.field("first_finish_reason", pa.string()),
    pa.field("first_prompt_tokens", pa.int32()),
    pa.field("first_output_tokens", pa.int32()),
]
#: the first step's whole answer: kept with the work rows (``_work/synth``), not the output
FIRST_ANSWER = pa.field("first_answer", pa.large_string())
FIRST_STEP_FIELDS = [FIRST_ANSWER] + SYNTH_FIELDS[-3:]
#: the discriminator's verdict (null when it is off)
SYNTH_FIELDS = SYNTH_FIELDS + JUDGE_FIELDS
SYNTH_SCHEMA = pa.schema(list(FILE_SCHEMA) + SYNTH_FIELDS + [FIRST_ANSWER])



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
