"""Chained rewrites (SwallowCode's SGCR then SCOR): a request's second step is built from
its first answer. One function for every engine (the actor pool runs both steps in one
call; Ray Data LLM runs them as two processors).

A request row with ``next_messages_json`` (see :class:`operators.prompt_builder.PromptBuilder`)
is generated once; :func:`next_step` then either turns it into its second request (the
first answer's code in place of :data:`operators.prompt_builder.PREVIOUS`, the first
answer and its token counts kept as provenance) or fails it with a ``step1_`` reason, so
the ledger accounts for requests lost at either step.
"""

from __future__ import annotations

import json

import pyarrow as pa

from operators.prompt_builder import PREVIOUS
from operators.schema import put_column
from operators.synth import FIRST_STEP_FIELDS, extract_code

FIRST = {"answer": "first_answer", "finish_reason": "first_finish_reason",
         "prompt_tokens": "first_prompt_tokens", "output_tokens": "first_output_tokens"}


def has_next_step(t: pa.Table) -> bool:
    return "next_messages_json" in t.column_names and t.column(
        "next_messages_json").null_count < t.num_rows


def fill_previous(messages_json: str, code: str) -> str:
    msgs = json.loads(messages_json)
    for m in msgs:
        m["content"] = m["content"].replace(PREVIOUS, code)
    return json.dumps(msgs)


def next_step(t: pa.Table) -> tuple[pa.Table, list[bool]]:
    """Generated rows → (the rows, with chained ones turned into their second request;
    which rows the engine must now generate). A first answer with no code, or cut by the
    token limit inside its code, fails its row (``gen_error`` ``step1_empty``,
    ``step1_truncated``; a first step that failed keeps its error as ``step1_<error>``)."""
    cols = {name: t.column(name).to_pylist() for name in (
        "next_messages_json", "messages_json", "lang", "answer", "finish_reason",
        "prompt_tokens", "output_tokens", "gen_status", "gen_error", "gen_detail")}
    n = t.num_rows
    first = {new: [None] * n for new in FIRST.values()}
    pending = [False] * n
    for i in range(n):
        nxt = cols["next_messages_json"][i]
        if nxt is None:
            continue
        for old, new in FIRST.items():
            first[new][i] = cols[old][i]
        if cols["gen_status"][i] != "ok":
            cols["gen_error"][i] = f"step1_{cols['gen_error'][i] or 'failed'}"
            continue
        code, how = extract_code(cols["answer"][i] or "", cols["lang"][i])
        reason = ("empty" if not code.strip() else "truncated"
                  if cols["finish_reason"][i] == "length" and how != "fenced" else None)
        if reason:
            cols["gen_status"][i], cols["gen_error"][i] = "failed", f"step1_{reason}"
            cols["gen_detail"][i] = "the first step's answer has no whole code block"
            continue
        pending[i] = True
        cols["messages_json"][i] = fill_previous(nxt, code)
        for old in ("answer", "finish_reason", "prompt_tokens", "output_tokens",
                    "gen_status"):
            cols[old][i] = None
    out = t
    for name, values in list(cols.items()) + list(first.items()):
        if name == "next_messages_json":
            continue
        typ = (t.schema.field(name).type if name in t.column_names else
               next(f.type for f in FIRST_STEP_FIELDS if f.name == name))
        arr = pa.array(values, typ)
        out = put_column(out, name, arr)
    return out, pending
