"""Chained rewrites (SwallowCode's SGCR then SCOR) and the Ray Data LLM backend's row
conversion, on small tables (no engine): the second request is built from the first
answer, and every way a request can be lost at the first step has a reason."""

from __future__ import annotations

import json

import pyarrow as pa
import pytest

from operators.chain import next_step
from operators.llm import GENERATION_SCHEMA, with_first_step
from operators.llm_ray import prepare, to_generation
from operators.prompt_builder import (PREVIOUS, REQUEST_SCHEMA, STYLE_GUIDES, PromptBuilder,
                                      Template, load_templates)
from operators.synth import SYNTH_SCHEMA

FILE = "import os\n\n\ndef f(a):\n    return os.path.join(a, 'x')\n" * 3


def _seeds(langs):
    return pa.table({"id": [f"s{i}" for i in range(len(langs))],
                     "content": [FILE] * len(langs), "lang": langs,
                     "n_requests": pa.array([1] * len(langs), pa.int32())})


def test_sgcr_then_scor_requests_carry_the_whole_file_and_the_follow_up():
    lib = load_templates()
    assert lib["sgcr"].then == "scor" and lib["sgcr"].seed_scope == "file"
    rows = PromptBuilder({"sgcr": 1.0}, seed=3)(_seeds(["Python", "Java", "Go"])).to_pylist()
    assert {r["template"] for r in rows} == {"sgcr>scor"}
    for r in rows:
        first = json.loads(r["messages_json"])
        assert FILE.strip("\n") in first[1]["content"]  # the whole file, not a snippet
        assert r["seed_start_line"] == 1 and r["seed_lines"] == len(FILE.splitlines())
        assert STYLE_GUIDES[r["lang"]] in first[1]["content"]
        assert r["next_template"] == "scor"
        follow = json.loads(r["next_messages_json"])
        assert PREVIOUS in follow[1]["content"] and STYLE_GUIDES[r["lang"]] in \
            follow[0]["content"]
    # a whole file longer than max_seed_chars: its first lines, cut at a line end
    cut = PromptBuilder({"sgcr": 1.0}, max_seed_chars=60)(_seeds(["Python"])).to_pylist()[0]
    assert cut["seed_lines"] < len(FILE.splitlines())
    assert PromptBuilder({"oss_instruct": 2.0, "sgcr": 1.0}).chained_share == pytest.approx(1 / 3)
    # one-step templates have no follow-up
    one = PromptBuilder({"oss_instruct": 1.0})(_seeds(["Python"])).to_pylist()[0]
    assert one["next_template"] is None and one["next_messages_json"] is None


def test_follow_ups_are_checked(tmp_path):
    (tmp_path / "a.yaml").write_text("id: a\nsystem: ''\nuser: '{seed}'\nthen: nope\n")
    with pytest.raises(ValueError, match="unknown template 'nope'"):
        PromptBuilder({"a": 1.0}, templates_dir=str(tmp_path))
    (tmp_path / "a.yaml").write_text("id: a\nsystem: ''\nuser: '{seed}'\nthen: sgcr\n")
    with pytest.raises(ValueError, match="no follow-up itself"):
        PromptBuilder({"a": 1.0}, templates_dir=str(tmp_path))
    with pytest.raises(ValueError, match="seed_scope"):
        Template("b", "", "{seed}", seed_scope="repo")


def _answered(answers, finish, status=("ok",) * 4, error=(None,) * 4):
    req = PromptBuilder({"sgcr": 1.0}, seed=1)(_seeds(["Python"] * 4))
    req = req.set_column(REQUEST_SCHEMA.get_field_index("next_messages_json"),
                         "next_messages_json",
                         pa.array(req.column("next_messages_json").to_pylist()[:3] + [None],
                                  pa.large_string()))
    gen = {"answer": list(answers), "finish_reason": list(finish),
           "prompt_tokens": [100] * 4, "output_tokens": [50, 512, 0, 40],
           "gen_status": list(status), "gen_error": list(error), "gen_detail": [None] * 4,
           "model": ["m"] * 4}
    for f in GENERATION_SCHEMA:
        req = req.append_column(f, pa.array(gen[f.name], f.type))
    return req


def test_next_step_builds_the_second_request_or_fails_the_first_with_a_reason():
    t = _answered(["Sure:\n```python\ndef g(x: int) -> int:\n    return x\n```\n",
                   "```python\ndef g(x):\n    return (", None, "```python\nx = 1\n```\n"],
                  ["stop", "length", None, "stop"],
                  status=("ok", "ok", "failed", "ok"), error=(None, None, "engine_error", None))
    out, pending = next_step(t)
    rows = out.to_pylist()
    assert pending == [True, False, False, False]
    # row 0: its second request holds the first answer's code; the first answer is kept
    msgs = json.loads(rows[0]["messages_json"])
    assert "def g(x: int) -> int:\n    return x" in msgs[1]["content"]
    assert PREVIOUS not in msgs[1]["content"]
    assert rows[0]["first_answer"].startswith("Sure:") and rows[0]["first_output_tokens"] == 50
    assert rows[0]["answer"] is None and rows[0]["gen_status"] is None
    # row 1: cut inside its code; row 2: the first step failed
    assert (rows[1]["gen_status"], rows[1]["gen_error"]) == ("failed", "step1_truncated")
    assert rows[1]["first_finish_reason"] == "length"
    assert (rows[2]["gen_status"], rows[2]["gen_error"]) == ("failed", "step1_engine_error")
    # row 3: one step, untouched
    assert rows[3]["answer"] == "```python\nx = 1\n```\n" and rows[3]["first_answer"] is None
    # the provenance columns reach the synthetic rows' schema
    assert {"first_output_tokens", "first_answer"} <= set(SYNTH_SCHEMA.names)
    assert set(with_first_step(t).column_names) >= {"first_answer", "first_prompt_tokens"}


def test_ray_data_llm_rows_convert_like_the_actor_rows():
    req = PromptBuilder({"oss_instruct": 1.0}, max_tokens=64)(_seeds(["Python"])).to_pylist()[0]
    p = prepare(req)
    assert p["messages"] == json.loads(req["messages_json"])
    assert p["arctic_request_id"] == req["request_id"]
    assert p["sampling_params"]["stop"] == ["\n```\n"]
    assert p["sampling_params"]["include_stop_str_in_output"] is True
    assert p["sampling_params"]["seed"] == req["sampling_seed"]
    # the engine stage writes its own integer request_id over ours; ours comes back
    req = dict(req, arctic_request_id=req["request_id"], request_id=7)
    rows = [dict(req, generated_text="```python\nx = 1\n```\n", num_input_tokens=90,
                 num_generated_tokens=9, __inference_error__=""),
            dict(req, generated_text="x" * 10, num_input_tokens=90,
                 num_generated_tokens=64, __inference_error__=""),
            dict(req, generated_text=None, num_input_tokens=0, num_generated_tokens=None,
                 __inference_error__="ValueError: The decoder prompt (length 5000) is "
                 "longer than the maximum model length of 2048."),
            dict(req, generated_text=None, num_input_tokens=0, num_generated_tokens=None,
                 __inference_error__="RuntimeError: boom")]
    out = to_generation(pa.Table.from_pylist(rows), REQUEST_SCHEMA.names, "m", 2048)
    assert out.column_names == REQUEST_SCHEMA.names + GENERATION_SCHEMA.names
    got = out.to_pylist()
    assert [r["finish_reason"] for r in got] == ["stop", "length", None, None]
    assert [r["gen_error"] for r in got] == [None, None, "prompt_too_long", "engine_error"]
    assert got[0]["output_tokens"] == 9 and got[0]["prompt_tokens"] == 90
    assert {r["request_id"] for r in got} == {req["arctic_request_id"]}
