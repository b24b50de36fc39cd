"""Phase 3's discriminator (WaveCoder's second LLM pass): every answer is judged against
explicit rules before it is kept.

The judge is a further step of the same request, run by the same engine call (the actor
pool's :class:`operators.llm.VLLMGenerator`, or one more Ray Data LLM processor): after the
last generation step :func:`to_judge` turns each answered row into a judging request (the
rules template of :mod:`operators/prompts/discriminator`, with the request the answer was
written for and the answer's code), setting the answer's own columns aside; the engine
generates a verdict constrained to ``PASS`` or ``FAIL <rule id>`` (vLLM structured outputs:
it is always one of them); :func:`from_judge` puts the answer's columns back and records
``judge_verdict`` (pass, fail, unclear: the judge failed or said something else),
``judge_rule`` (for an unclear verdict of a failed judging request: its error) and the
judge's token counts. Validation runs after, as before, and
:func:`apply_verdicts` removes the files that passed validation but failed the judge:
ledger stage ``synth_discriminator``, reason ``failed_<rule id>``, the rule's text as
detail. The verdict of a file validation rejected stays with it, so the manifest can set
the judge against validation (how many files that parse it rejects).
"""

from __future__ import annotations

import dataclasses
import json
import os

import pyarrow as pa
import yaml

from operators.prompt_builder import fence
from operators.schema import mark_removed, put_column

STAGE = "synth_discriminator"
TEMPLATE = os.path.join(os.path.dirname(__file__), "prompts", "discriminator", "rules.yaml")
#: what the judge adds to a row (kept as provenance in phase3/)
JUDGE_FIELDS = [pa.field("judge_verdict", pa.string()), pa.field("judge_rule", pa.string()),
                pa.field("judge_prompt_tokens", pa.int32()),
                pa.field("judge_output_tokens", pa.int32())]
#: a row's generation columns, set aside while its judging request runs
_ANSWER = ["answer", "finish_reason", "prompt_tokens", "output_tokens", "gen_status",
           "gen_error", "gen_detail", "messages_json", "temperature", "top_p", "max_tokens",
           "stop"]


@dataclasses.dataclass
class DiscriminatorSettings:
    """``phase3.discriminator``."""

    enabled: bool = False
    #: a rules YAML (default: operators/prompts/discriminator/rules.yaml)
    template: str | None = None
    #: the verdict's token limit (``FAIL R12`` is a few tokens)
    max_tokens: int = 8
    #: characters of the request shown to the judge (its head)
    max_task_chars: int = 3000
    #: characters of the code shown to the judge (its head)
    max_code_chars: int = 12000
    #: a verdict that is neither PASS nor FAIL <rule> (the engine failed): keep or reject
    on_unclear: str = "keep"

    def __post_init__(self):
        if self.on_unclear not in ("keep", "reject"):
            raise ValueError("on_unclear must be keep or reject")
        if self.max_tokens < 2:
            raise ValueError("max_tokens must be >= 2")

    def rules(self) -> "Rules":
        return Rules.load(self.template or TEMPLATE)


@dataclasses.dataclass(frozen=True)
class Rules:
    system: str
    user: str
    rules: tuple[tuple[str, str], ...]
    languages: tuple[tuple[str, tuple[tuple[str, str], ...]], ...] = ()

    @classmethod
    def load(cls, path: str) -> "Rules":
        with open(path) as f:
            raw = yaml.safe_load(f)
        unknown = set(raw) - {"id", "system", "user", "rules", "languages"}
        if unknown:
            raise ValueError(f"{path}: unknown keys {sorted(unknown)}")

        def pairs(items):
            out = tuple((str(r["id"]), str(r["text"])) for r in items or [])
            if any(" " in i or not i for i, _ in out):
                raise ValueError(f"{path}: a rule id is one word")
            return out

        rules = cls(raw.get("system", ""), raw["user"], pairs(raw["rules"]),
                    tuple((lang, pairs(items)) for lang, items in
                          (raw.get("languages") or {}).items()))
        for part in ("{task}", "{code}", "{rules}"):
            if part not in rules.user:
                raise ValueError(f"{path}: the user message needs {part}")
        if not rules.rules:
            raise ValueError(f"{path}: no rules")
        return rules

    def for_language(self, lang: str) -> list[tuple[str, str]]:
        out = dict(self.rules)
        out.update(dict(self.languages).get(lang, ()))
        return list(out.items())

    def choices(self, lang: str) -> list[str]:
        return ["PASS"] + [f"FAIL {i}" for i, _ in self.for_language(lang)]

    def messages(self, lang: str, task: str, code: str) -> list[dict]:
        rules = "\n".join(f"{i}. {text}" for i, text in self.for_language(lang))
        values = {"language": lang, "fence": fence(lang), "rules": rules, "task": "\0T\0",
                  "code": "\0C\0"}
        user = self.user.format(**values).replace("\0T\0", task).replace("\0C\0", code)
        out = [{"role": "system", "content": self.system.format(**values).strip()}] \
            if self.system.strip() else []
        return out + [{"role": "user", "content": user}]


def _answer_type(name: str) -> pa.DataType:
    """A generation column's own type (a row that went through Ray Data LLM may come back
    with, e.g., ``stop`` as a list of non-nullable items)."""
    from operators.llm import GENERATION_SCHEMA
    from operators.prompt_builder import REQUEST_SCHEMA

    for schema in (GENERATION_SCHEMA, REQUEST_SCHEMA):
        if name in schema.names:
            return schema.field(name).type
    raise KeyError(name)


def _task(messages_json: str, limit: int) -> str:
    """The request's last user message: what the answer was written for."""
    msgs = json.loads(messages_json or "[]")
    users = [m["content"] for m in msgs if m.get("role") == "user"]
    return (users[-1] if users else "")[:limit]


def to_judge(t: pa.Table, settings: DiscriminatorSettings, rules: Rules
             ) -> tuple[pa.Table, list[bool]]:
    """Answered rows → judging requests (the answer's columns set aside in
    ``judge_stash``); which rows the engine must now generate."""
    from operators.synth import extract_code

    n = t.num_rows
    cols = {c: t.column(c).to_pylist() if c in t.column_names else [None] * n
            for c in _ANSWER + ["lang"]}
    stash, choices, pending = [None] * n, [None] * n, [False] * n
    for i in range(n):
        if cols["gen_status"][i] != "ok":
            continue
        code, _ = extract_code(cols["answer"][i] or "", cols["lang"][i])
        if not code.strip():
            continue  # nothing to judge: validation rejects it
        stash[i] = json.dumps({c: cols[c][i] for c in _ANSWER})
        lang = cols["lang"][i]
        cols["messages_json"][i] = json.dumps(rules.messages(
            lang, _task(cols["messages_json"][i], settings.max_task_chars),
            code[:settings.max_code_chars]))
        cols["temperature"][i], cols["top_p"][i] = 0.0, 1.0
        cols["max_tokens"][i], cols["stop"][i] = settings.max_tokens, None
        for c in ("answer", "finish_reason", "prompt_tokens", "output_tokens", "gen_status",
                  "gen_error", "gen_detail"):
            cols[c][i] = None
        choices[i] = rules.choices(lang)
        pending[i] = True
    out = t
    for c in _ANSWER:
        if c in t.column_names:
            out = put_column(out, c, pa.array(cols[c], _answer_type(c)))
    out = put_column(out, "judge_stash", pa.array(stash, pa.large_string()))
    out = put_column(out, "guided_choice", pa.array(choices, pa.list_(pa.string())))
    return out, pending


def parse_verdict(text: str | None, choices: list[str]) -> tuple[str, str | None]:
    """(verdict, rule): ``pass``; ``fail`` and the rule id; ``unclear`` otherwise."""
    said = " ".join((text or "").split()).upper()
    for c in sorted(choices or [], key=len, reverse=True):
        if said.startswith(c.upper()):
            return ("pass", None) if c == "PASS" else ("fail", c.split(" ", 1)[1])
    return "unclear", None


def from_judge(t: pa.Table) -> pa.Table:
    """Judged rows → their answer's columns back, and the verdict columns."""
    n = t.num_rows
    stash = t.column("judge_stash").to_pylist()
    choices = t.column("guided_choice").to_pylist()
    said = {c: t.column(c).to_pylist() for c in ("answer", "gen_status", "gen_error",
                                                 "prompt_tokens", "output_tokens")}
    verdict, rule, ptok, otok = [None] * n, [None] * n, [None] * n, [None] * n
    restored = {c: t.column(c).to_pylist() if c in t.column_names else [None] * n
                for c in _ANSWER}
    for i in range(n):
        if stash[i] is None:
            continue
        if said["gen_status"][i] == "ok":
            verdict[i], rule[i] = parse_verdict(said["answer"][i], choices[i])
        else:  # the judging request failed: its reason stands in for the rule
            verdict[i], rule[i] = "unclear", said["gen_error"][i] or "failed"
        ptok[i], otok[i] = said["prompt_tokens"][i], said["output_tokens"][i]
        for c, v in json.loads(stash[i]).items():
            restored[c][i] = v
    out = t.drop_columns(["judge_stash", "guided_choice"])
    for c in _ANSWER:
        if c in out.column_names:
            out = put_column(out, c, pa.array(restored[c], _answer_type(c)))
    for f, values in zip(JUDGE_FIELDS, (verdict, rule, ptok, otok)):
        out = put_column(out, f, pa.array(values, f.type))
    return out


def apply_verdicts(t: pa.Table, settings: DiscriminatorSettings, rules: Rules) -> pa.Table:
    """Files that passed validation and failed the judge (or, with ``on_unclear: reject``,
    got no clear verdict) become ledger tombstones of stage ``synth_discriminator``.
    ``t``: validated rows (:data:`operators.synth.SYNTH_SCHEMA`, verdict columns included)."""
    verdict = t.column("judge_verdict").to_pylist()
    rule = t.column("judge_rule").to_pylist()
    langs = t.column("lang").to_pylist()
    n = t.num_rows
    mask, reasons, details = [False] * n, [None] * n, [None] * n
    for i in range(n):
        if verdict[i] == "fail" or (verdict[i] == "unclear" and
                                    settings.on_unclear == "reject"):
            mask[i] = True
            if verdict[i] == "fail":
                reasons[i] = f"failed_{rule[i]}"
                details[i] = dict(rules.for_language(langs[i])).get(rule[i], "")[:200]
            else:
                reasons[i] = "unclear_verdict"
                details[i] = f"no clear verdict ({rule[i] or 'unparsed'})"
    return mark_removed(t, pa.array(mask), STAGE, pa.array(reasons, pa.string()),
                        pa.array(details, pa.string()))


def summarize(rows: list[dict], on_unclear: str = "keep") -> dict:
    """The manifest's ``phase3.discriminator`` from grouped counts (``template``, ``lang``,
    ``judge_verdict``, ``judge_rule``, ``validated``: the answer passed validation;
    ``count()``): verdicts overall, per rule, template and language (acceptance: the
    share of judged answers the judge keeps), and the judge against validation."""
    def blank():
        return {"judged": 0, "pass": 0, "fail": 0, "unclear": 0}

    total, by_rule, by_t, by_l = blank(), {}, {}, {}
    agree = {f"{v}_{j}": 0 for v in ("valid", "invalid") for j in ("pass", "fail", "unclear")}
    for r in rows:
        verdict, n = r["judge_verdict"], r["count()"]
        if verdict is None:
            continue  # not judged: the generation failed or gave no code
        for d in (total, by_t.setdefault(r["template"], blank()),
                  by_l.setdefault(r["lang"], blank())):
            d["judged"] += n
            d[verdict] += n
        if verdict == "fail":
            by_rule[r["judge_rule"]] = by_rule.get(r["judge_rule"], 0) + n
        agree[f"{'valid' if r['validated'] else 'invalid'}_{verdict}"] += n

    def rate(d):
        kept = d["pass"] + (d["unclear"] if on_unclear == "keep" else 0)
        return {**d, "acceptance_rate": round(kept / d["judged"], 4) if d["judged"] else None}

    valid = sum(v for k, v in agree.items() if k.startswith("valid_"))
    invalid = sum(v for k, v in agree.items() if k.startswith("invalid_"))
    return {**rate(total), "failed_by_rule": dict(sorted(by_rule.items())),
            "templates": {k: rate(v) for k, v in sorted(by_t.items())},
            "languages": {k: rate(v) for k, v in sorted(by_l.items())},
            "against_validation": {
                **agree,
                # of the answers validation kept (they parse, fit, are clean): judged bad
                "rejects_valid_share": round(agree["valid_fail"] / valid, 4) if valid else None,
                # of the answers validation rejected: judged good
                "passes_invalid_share": round(agree["invalid_pass"] / invalid, 4)
                if invalid else None}}
