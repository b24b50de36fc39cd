"""Phase 3's engine stage: request rows → the same rows with their answers, on the engine
``phase3.engine.backend`` names.

- ``actor``: :class:`operators.llm.VLLMGenerator` on an actor pool; a replica takes one
  batch at a time and runs both steps of a chained request in the same call (one engine,
  no second pool).
- ``ray_data_llm``: Ray Data LLM processors (:mod:`operators.llm_ray`), continuous batching
  across ``max_concurrent_batches`` batches per replica. A chained request's first answers
  are written to ``_work/synth_step1/w<k>/``; the rows :func:`operators.chain.next_step`
  leaves pending go through a second processor, the others (one step, or lost at step 1)
  pass by it.
"""

from __future__ import annotations

import pyarrow as pa
import pyarrow.compute as pc
import ray.data

from flows.faults import maybe_die
from flows.runtime import Run, actor_resources
from operators.chain import next_step
from operators.llm import VLLMGenerator, with_first_step
from operators.prompt_builder import REQUEST_SCHEMA
from operators.synth import FIRST_STEP_FIELDS


class Generator(VLLMGenerator):
    """The rewriter on the pool, with the ``generate`` fault point of the node-loss tests."""

    def __call__(self, table: pa.Table) -> pa.Table:
        maybe_die("generate")
        return super().__call__(table)


def _next_step(t: pa.Table) -> pa.Table:
    t, pending = next_step(t)
    return with_first_step(t).append_column("pending", pa.array(pending, pa.bool_()))


def _where(t: pa.Table, pending: bool) -> pa.Table:
    keep = t.column("pending") if pending else pc.invert(t.column("pending"))
    return t.filter(keep).drop_columns(["pending"])


def answers(run: Run, requests: ray.data.Dataset, wave: int) -> ray.data.Dataset:
    p3 = run.settings.phase3
    replicas = (p3.actors, p3.max_actors or p3.actors)
    if p3.engine.backend == "actor":
        pool = ray.data.ActorPoolStrategy(min_size=replicas[0], max_size=replicas[1])
        return requests.map_batches(
            Generator, batch_size=p3.batch_requests, batch_format="pyarrow",
            fn_constructor_kwargs={"engine": p3.engine, "s3": run.settings.s3}, compute=pool,
            **actor_resources(p3.cpus_per_actor, p3.gpus_per_actor, p3.resources))
    from operators.llm_ray import generate, processor

    def step(ds, columns):
        proc = processor(p3.engine, batch_size=p3.batch_requests, replicas=replicas,
                         cpus=p3.cpus_per_actor, gpus=p3.gpus_per_actor,
                         resources=p3.resources)
        return generate(ds, proc, p3.engine, columns)

    first = step(requests, REQUEST_SCHEMA.names)
    if not p3.builder().chained_share:
        return first.map_batches(with_first_step, batch_format="pyarrow")
    rel = f"_work/synth_step1/w{wave:03d}"
    run.write(first.map_batches(_next_step, batch_format="pyarrow"), rel)
    pending = run.read(rel).map_batches(_where, fn_kwargs={"pending": True},
                                        batch_format="pyarrow")
    done = run.read(rel).map_batches(_where, fn_kwargs={"pending": False},
                                     batch_format="pyarrow")
    second = step(pending, REQUEST_SCHEMA.names + [f.name for f in FIRST_STEP_FIELDS])
    return done.union(second)
