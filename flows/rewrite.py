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

With ``phase3.discriminator`` on, every answer is then judged (:mod:`operators.judge`): the
actor runs the judging step in the same call; Ray Data LLM writes the answers with their
judging requests to ``_work/synth_judge/w<k>/`` and sends the rows to judge through one
more processor.
"""

from __future__ import annotations

import pyarrow as pa
import pyarrow.compute as pc
import ray.data

from flows.faults import maybe_die
from flows.runtime import Run, actor_resources
from operators.chain import next_step
from flows.manifest import grouped_sums
from operators.judge import STAGE as JUDGE_STAGE, from_judge, summarize, to_judge
from operators.llm import VLLMGenerator, with_first_step
from operators.prompt_builder import REQUEST_SCHEMA
from operators.synth import FIRST_STEP_FIELDS, SYNTH_SCHEMA


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


def _to_judge(t: pa.Table, discriminator) -> pa.Table:
    t, pending = to_judge(t, discriminator, discriminator.rules())
    return t.append_column("pending", pa.array(pending, pa.bool_()))


def answers(run: Run, requests: ray.data.Dataset, wave: int) -> ray.data.Dataset:
    p3 = run.settings.phase3
    replicas = (p3.actors, p3.max_actors or p3.actors)
    if p3.engine.backend == "actor":
        pool = ray.data.ActorPoolStrategy(min_size=replicas[0], max_size=replicas[1])
        return requests.map_batches(
            Generator, batch_size=p3.batch_requests, batch_format="pyarrow",
            fn_constructor_kwargs={"engine": p3.engine, "s3": run.settings.s3,
                                   "discriminator": p3.discriminator}, compute=pool,
            **actor_resources(p3.cpus_per_actor, p3.gpus_per_actor, p3.resources))
    from operators.llm_ray import generate, processor

    def step(ds, columns):
        proc = processor(p3.engine, batch_size=p3.batch_requests, replicas=replicas,
                         cpus=p3.cpus_per_actor, gpus=p3.gpus_per_actor,
                         resources=p3.resources)
        return generate(ds, proc, p3.engine, columns)

    columns = REQUEST_SCHEMA.names + [f.name for f in FIRST_STEP_FIELDS]
    out = step(requests, REQUEST_SCHEMA.names)
    if not p3.builder().chained_share:
        out = out.map_batches(with_first_step, batch_format="pyarrow")
    else:
        out = _second_step(run, out, f"_work/synth_step1/w{wave:03d}", _next_step,
                           lambda ds: step(ds, columns))
    if not p3.discriminator.enabled:
        return out
    judged = _second_step(run, out, f"_work/synth_judge/w{wave:03d}", _to_judge,
                          lambda ds: step(ds, columns + ["judge_stash", "guided_choice"]),
                          {"discriminator": p3.discriminator})
    return judged.map_batches(from_judge, batch_format="pyarrow")


def _second_step(run: Run, ds, rel: str, prepare, generate, kwargs=None):
    """Rows → written with the ``pending`` flag ``prepare`` sets; the pending ones through
    ``generate``, the others past it."""
    run.write(ds.map_batches(prepare, batch_format="pyarrow", fn_kwargs=kwargs or {}), rel)
    pending = run.read(rel).map_batches(_where, fn_kwargs={"pending": True},
                                        batch_format="pyarrow")
    done = run.read(rel).map_batches(_where, fn_kwargs={"pending": False},
                                     batch_format="pyarrow")
    return done.union(generate(pending))


def _judged(b: pa.Table) -> pa.Table:
    stage = b.column("removed_stage")
    ok = pc.or_(pc.is_null(stage), pc.fill_null(pc.equal(stage, JUDGE_STAGE), False))
    return b.drop_columns(["removed_stage"]).append_column("validated", ok)


def discriminator_stats(run: Run) -> dict:
    """Verdicts per template and language, and the judge against validation (every wave)."""
    rows = run.read("_work/synth", columns=["template", "lang", "judge_verdict",
                                            "judge_rule", "removed_stage"], schema=SYNTH_SCHEMA)
    groups = grouped_sums(rows.map_batches(_judged, batch_format="pyarrow"),
                          ["template", "lang", "judge_verdict", "judge_rule", "validated"], [])
    return summarize(groups, run.settings.phase3.discriminator.on_unclear)
