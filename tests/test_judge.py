"""Phase 3's discriminator on small tables (the engine's side is in test_phase3): the rules
template, judging requests built from answers with the answers set aside and put back,
verdict parsing, removals after validation with the failed rule, and the summary against
validation."""

from __future__ import annotations

import json

import pyarrow as pa
import pytest

from operators.judge import (STAGE, DiscriminatorSettings, Rules, apply_verdicts,
                             from_judge, parse_verdict, summarize, to_judge)
from operators.llm import GENERATION_SCHEMA, with_first_step
from operators.llm_ray import prepare
from operators.prompt_builder import PromptBuilder
from operators.synth import SYNTH_SCHEMA, SynthValidator

CODE = 'def add(a: int, b: int) -> int:\n    """Sum."""\n    return a + b\n\n\nprint(add(1, 2))\n'


def _answered(answers, status):
    seeds = pa.table({"id": [f"s{i}" for i in range(len(answers))],
                      "content": ["def f(x):\n    return x\n" * 3] * len(answers),
                      "lang": ["Python"] * len(answers),
                      "n_requests": pa.array([1] * len(answers), pa.int32())})
    req = PromptBuilder({"oss_instruct": 1.0}, seed=2)(seeds)
    n = req.num_rows
    gen = {"answer": list(answers), "finish_reason": ["stop"] * n,
           "prompt_tokens": [100] * n, "output_tokens": [40] * n, "gen_status": list(status),
           "gen_error": [None if s == "ok" else "engine_error" for s in status],
           "gen_detail": [None] * n, "model": ["m"] * n}
    for f in GENERATION_SCHEMA:
        req = req.append_column(f, pa.array(gen[f.name], f.type))
    return with_first_step(req)


def test_rules_template_per_language_and_choices(tmp_path):
    rules = DiscriminatorSettings(enabled=True).rules()
    py, go = rules.for_language("Python"), rules.for_language("Go")
    assert [i for i, _ in go] == ["R1", "R2", "R3", "R4", "R5"]
    assert [i for i, _ in py][-1] == "R6" and len(py) == 6
    assert rules.choices("Go") == ["PASS", "FAIL R1", "FAIL R2", "FAIL R3", "FAIL R4",
                                   "FAIL R5"]
    msgs = rules.messages("Python", "Write {braces} please", "x = {1: 2}")
    assert msgs[0]["role"] == "system" and "Python" in msgs[0]["content"]
    assert "Write {braces} please" in msgs[1]["content"] and "x = {1: 2}" in msgs[1]["content"]
    assert "R6. It runs under Python 3" in msgs[1]["content"]
    # an override: same shape, validated
    own = tmp_path / "mine.yaml"
    own.write_text("user: '{task} {code} {rules}'\nrules:\n  - {id: A, text: short}\n")
    assert Rules.load(str(own)).choices("C") == ["PASS", "FAIL A"]
    own.write_text("user: '{task} {rules}'\nrules:\n  - {id: A, text: short}\n")
    with pytest.raises(ValueError, match="needs {code}"):
        Rules.load(str(own))


def test_parse_verdict():
    ch = ["PASS", "FAIL R1", "FAIL R10", "FAIL R2"]
    assert parse_verdict("PASS", ch) == ("pass", None)
    assert parse_verdict(" fail  r10 because", ch) == ("fail", "R10")
    assert parse_verdict("FAIL R2", ch) == ("fail", "R2")
    assert parse_verdict("maybe", ch) == ("unclear", None)
    assert parse_verdict(None, ch) == ("unclear", None)


def test_judging_requests_set_the_answer_aside_and_put_it_back():
    d = DiscriminatorSettings(enabled=True, max_code_chars=50)
    rules = d.rules()
    answers = [f"Here:\n```python\n{CODE}```\n", "no code at all", None, "```python\nx=1\n```"]
    t = _answered(answers, ["ok", "ok", "failed", "ok"])
    judging, pending = to_judge(t, d, rules)
    assert pending == [True, True, False, True]  # "no code": the whole answer is the code
    rows = judging.to_pylist()
    msgs = json.loads(rows[0]["messages_json"])
    assert "def add(a: int, b: int)" in msgs[-1]["content"]
    assert "print(add" not in msgs[-1]["content"]  # the code's head only (max_code_chars)
    # the task shown is the request the answer was written for
    first = json.loads(t.column("messages_json")[0].as_py())[-1]["content"]
    assert first[:200] in msgs[-1]["content"]
    assert rows[0]["temperature"] == 0 and rows[0]["max_tokens"] == d.max_tokens
    assert rows[0]["guided_choice"] == rules.choices("Python") and rows[0]["answer"] is None
    assert rows[2]["guided_choice"] is None  # a failed generation is not judged
    # the Ray Data LLM request carries the choice as vLLM's structured outputs
    assert prepare(rows[0])["sampling_params"]["structured_outputs"] == {
        "choice": rules.choices("Python")}
    assert "structured_outputs" not in prepare(rows[2])["sampling_params"]
    # the engine's verdicts (a row not pending keeps its columns, as the engine leaves them)
    said = {"answer": ["FAIL R3", "PASS", None, "garbled"],
            "gen_status": ["ok", "ok", "failed", "ok"],
            "prompt_tokens": [700, 650, 100, 600], "output_tokens": [3, 1, 40, 2]}
    for c, v in said.items():
        judging = judging.set_column(judging.schema.get_field_index(c), c,
                                     pa.array(v, judging.schema.field(c).type))
    out = from_judge(judging).to_pylist()
    assert [r["judge_verdict"] for r in out] == ["fail", "pass", None, "unclear"]
    assert [r["judge_rule"] for r in out] == ["R3", None, None, None]
    failed = judging.set_column(judging.schema.get_field_index("gen_status"), "gen_status",
                                pa.array(["failed"] * 4, pa.string()))
    failed = failed.set_column(failed.schema.get_field_index("gen_error"), "gen_error",
                               pa.array(["engine_error"] * 4, pa.string()))
    assert [(r["judge_verdict"], r["judge_rule"]) for r in from_judge(failed).to_pylist()][:2] \
        == [("unclear", "engine_error")] * 2
    assert out[0]["judge_prompt_tokens"] == 700 and out[0]["judge_output_tokens"] == 3
    original = t.to_pylist()
    for a, b in zip(out, original):  # every generation column as it was
        for c in ("answer", "messages_json", "temperature", "max_tokens", "output_tokens",
                  "gen_status", "gen_error", "stop"):
            assert a[c] == b[c], c
    assert "judge_stash" not in from_judge(judging).column_names


def test_verdicts_apply_after_validation_and_summary():
    d = DiscriminatorSettings(enabled=True)
    rules = d.rules()
    good = f"```python\n{CODE}```\n"
    t = _answered([good, good, "```python\ndef broken(:\n```\n", good],
                  ["ok", "ok", "ok", "ok"])
    t, pending = to_judge(t, d, rules)
    verdicts = ["FAIL R2", "PASS", "PASS", "maybe"]
    t = t.set_column(t.schema.get_field_index("answer"), "answer",
                     pa.array(verdicts, pa.large_string()))
    t = t.set_column(t.schema.get_field_index("gen_status"), "gen_status",
                     pa.array(["ok"] * 4, pa.string()))
    judged = from_judge(t)
    checked = SynthValidator(tokenizer="packaged:smollm2", min_tokens=4)(judged)
    assert "judge_verdict" in SYNTH_SCHEMA.names
    out = apply_verdicts(checked, d, rules).to_pylist()
    stages = [r["removed_stage"] for r in out]
    # validation's own removal stays; the judge removes the valid file it failed
    assert stages == [STAGE, None, "synth_validation", None]
    assert out[0]["removed_reason"] == "failed_R2" and "self-contained" in out[0][
        "removed_detail"]
    assert out[0]["content"] is None  # a tombstone: its ledger row keeps the reason
    strict = apply_verdicts(checked, DiscriminatorSettings(enabled=True, on_unclear="reject"),
                            rules).to_pylist()
    assert strict[3]["removed_reason"] == "unclear_verdict"
    rows = [{"template": "oss_instruct", "lang": "Python", "judge_verdict": v, "judge_rule": r,
             "validated": ok, "count()": n}
            for v, r, ok, n in [("pass", None, True, 6), ("fail", "R2", True, 2),
                                ("pass", None, False, 1), ("fail", "R3", False, 1),
                                (None, None, False, 3)]]
    s = summarize(rows)
    assert (s["judged"], s["pass"], s["fail"], s["acceptance_rate"]) == (10, 7, 3, 0.7)
    assert s["failed_by_rule"] == {"R2": 2, "R3": 1}
    assert s["templates"]["oss_instruct"]["acceptance_rate"] == 0.7
    assert s["against_validation"]["rejects_valid_share"] == 0.25
    assert s["against_validation"]["passes_invalid_share"] == 0.5
