"""The rewriter on Ray Data LLM (``ray.data.llm``): vLLM's async engine in a Ray Data actor
pool, with continuous batching across batches (``max_concurrent_batches`` batches in
flight per replica, so no replica waits for a batch's longest answer), tensor/pipeline
parallel placement groups, and rows that fail without failing the job.

:func:`generate` maps request rows (:data:`operators.prompt_builder.REQUEST_SCHEMA`) to the
same rows plus :data:`operators.llm.GENERATION_SCHEMA` columns, as
:class:`operators.llm.VLLMGenerator` does; the flow picks one with
``phase3.engine.backend``. A chained request's second step is a second processor
(:mod:`flows.rewrite` runs it on the rows :func:`operators.chain.next_step` left pending).

The model source: a packaged model is converted on the driver's node (the embedded, one-node
case); a hub name or an ``s3://`` prefix is given to Ray Data LLM, which downloads it on
each replica's node.
"""

from __future__ import annotations

import json

import numpy as np
import pyarrow as pa

from operators.llm import GENERATION_SCHEMA, EngineConfig, model_dir
from operators.schema import put_column

#: Ray Data LLM's error column (empty for a row that succeeded)
ERROR = "__inference_error__"
#: our request id, kept aside: the engine stage writes its own ``request_id`` over ours
OUR_ID = "arctic_request_id"


def _plain(v):
    return v.tolist() if isinstance(v, np.ndarray) else v


def prepare(row: dict) -> dict:
    """A request row → Ray Data LLM's chat request (the row's own columns travel along)."""
    stop = [str(s) for s in (_plain(row.get("stop")) or [])]
    params = {"temperature": float(row["temperature"]), "top_p": float(row["top_p"]),
              "max_tokens": int(row["max_tokens"]), "seed": int(row["sampling_seed"]),
              "stop": stop or None, "include_stop_str_in_output": bool(stop)}
    choice = _plain(row.get("guided_choice"))
    if choice:  # the discriminator's verdicts (operators.judge)
        params["structured_outputs"] = {"choice": [str(c) for c in choice]}
    return {OUR_ID: row["request_id"], "messages": json.loads(row["messages_json"]),
            "sampling_params": params}


def _keep_all(row: dict) -> dict:
    return row  # error rows skip this and carry the same keys (Ray Data LLM's contract)


def to_generation(t: pa.Table, columns: list[str], model: str, max_model_len: int
                  ) -> pa.Table:
    """Processor output → the request ``columns`` plus the generation columns."""
    n = t.num_rows
    get = (lambda c: t.column(c).to_pylist() if c in t.column_names else [None] * n)
    errors, text = get(ERROR), get("generated_text")
    n_in, n_out = get("num_input_tokens"), get("num_generated_tokens")
    max_tok, stops = get("max_tokens"), get("stop")
    out = {f.name: [None] * n for f in GENERATION_SCHEMA}
    out["model"] = [model] * n
    for i in range(n):
        if errors[i]:
            long = "maximum model length" in errors[i] or "context length" in errors[i]
            out["gen_status"][i] = "failed"
            out["gen_error"][i] = "prompt_too_long" if long else "engine_error"
            out["gen_detail"][i] = errors[i][:500]
            continue
        stopped = any(text[i].endswith(s) for s in (stops[i] or []))
        full = (n_out[i] >= max_tok[i]) or (n_in[i] + n_out[i] >= max_model_len)
        out["answer"][i], out["output_tokens"][i] = text[i], n_out[i]
        out["prompt_tokens"][i] = n_in[i]
        out["finish_reason"][i] = "length" if full and not stopped else "stop"
        out["gen_status"][i] = "ok"
    if OUR_ID in t.column_names:
        t = t.drop_columns([c for c in ["request_id"] if c in t.column_names])
        t = t.rename_columns(["request_id" if c == OUR_ID else c for c in t.column_names])
    keep = t.select([c for c in columns if c in t.column_names])
    for f in GENERATION_SCHEMA:
        col = pa.array(out[f.name], f.type)
        keep = put_column(keep, f, col)
    return keep


def processor(engine: EngineConfig, *, batch_size: int, replicas: tuple[int, int],
              cpus: float, gpus: float, resources: dict | None = None):
    """One Ray Data LLM processor for ``engine``: ``replicas`` (min, max) engine replicas,
    each with ``tensor_parallel_size`` workers of ``cpus`` CPUs and ``gpus`` / TP GPUs."""
    from ray.data.llm import build_processor, vLLMEngineProcessorConfig

    source = model_dir(engine.model) if engine.model.startswith("packaged:") else engine.model
    kwargs = engine.llm_kwargs(source)
    kwargs.pop("model")
    kwargs.pop("distributed_executor_backend", None)  # Ray Data LLM places TP workers
    kwargs.setdefault("disable_log_stats", True)  # as vllm.LLM: no per-step stats
    tp = engine.tensor_parallel_size
    bundle = {"CPU": cpus / tp, "GPU": gpus / tp}
    bundle |= {k: v / tp for k, v in (resources or {}).items()}
    lo, hi = replicas
    config = vLLMEngineProcessorConfig(
        model_source=source, engine_kwargs=kwargs, batch_size=batch_size,
        concurrency=lo if lo == hi else (lo, hi),
        max_concurrent_batches=engine.max_concurrent_batches,
        placement_group_config={"bundles": [{k: v for k, v in bundle.items() if v}
                                            or {"CPU": 0.001}] * tp},
        should_continue_on_error=True, log_engine_metrics=False,
        # the engine tokenizes and detokenizes itself; the chat template is one light stage
        chat_template_stage={"enabled": True, "num_cpus": 0, "concurrency": 1},
        tokenize_stage={"enabled": False}, detokenize_stage={"enabled": False})
    # the row maps and the template stage are light and ask for no CPU: the engine holds
    # its CPUs for the whole dataset, and on a small machine any more than the pool's own
    # would leave none for the tasks that read and build the requests (a deadlock)
    light = {"num_cpus": 0}
    return build_processor(config, preprocess=prepare, postprocess=_keep_all,
                           preprocess_map_kwargs=light, postprocess_map_kwargs=light)


def _without_model(t: pa.Table) -> pa.Table:
    return t.drop_columns([c for c in ("model",) if c in t.column_names])


def generate(ds, proc, engine: EngineConfig, columns: list[str]):
    """Request rows (``columns``) → the same rows plus the generation columns. A row that
    was generated before (a chain's second step, the judge) loses its ``model`` column
    first: the engine stage reads a row's ``model`` as a LoRA adapter to load."""
    out = proc(ds.map_batches(_without_model, batch_format="pyarrow", num_cpus=0))
    return out.map_batches(to_generation, batch_format="pyarrow", num_cpus=0, fn_kwargs={
        "columns": columns, "model": engine.model, "max_model_len": engine.max_model_len})
