"""The phases behind one interface, and the names they share.

A phase is a key of ``--phases`` and a function ``run(run) -> dict`` that runs its stages
through :meth:`flows.runtime.Run.stage` (timed, marked, skipped on ``--resume``) and returns
its section of the manifest::

    phase 1    flows/phase1.py    read → row-wise operators (operators/registry.py) →
                                  exact dedup → near dedup (flows/near_dedup.py) → grouping
    phase 2    flows/phase2.py    annotator scores → per-language top-k × epochs
    phase 3    flows/phase3.py    seeds → vLLM waves → validation, dedup → budget
    mix        flows/mixture.py   phase-tagged Parquet shards of the training mixture
"""

from __future__ import annotations

import dataclasses
import typing

#: phase 1's dedup stages: their ledgers mark files that grouping and phase 2 leave out
DEDUP_STAGES = ["exact_dedup", "near_dedup"]

#: the file columns that phases 2 and 3 read from phase 1's cleaned files (``_work/clean``)
FILE_COLS = ["id", "content", "path", "n_tokens", "lang", "repo", "source"]


def live_rows(run) -> int:
    """Rows that survived the row-wise stages (reads one small column)."""
    return run.read("_work/clean", columns=["removed_stage"], live=True).count()


def live_totals(run) -> tuple[int, int]:
    """Rows and content bytes that survived the row-wise stages (one row per block back)."""
    from flows.shuffle import rows_and_bytes

    return rows_and_bytes(run.read("_work/clean", columns=["size_bytes"], live=True))


class MissingPhaseInput(RuntimeError):
    """A phase was asked for without the output of the phase it builds on."""


@dataclasses.dataclass(frozen=True)
class Phase:
    #: as ``--phases`` names it
    key: str
    #: its section of the manifest
    section: str
    #: "module:function" of ``run(run) -> section`` (imported when the phase runs, so a
    #: phase's dependencies load only when it does)
    entry: str

    def run(self, run) -> dict:
        import importlib

        module, name = self.entry.split(":")
        fn: typing.Callable = getattr(importlib.import_module(module), name)
        return fn(run)


PHASES = [Phase("1", "phase1", "flows.phase1:run_phase1"),
          Phase("2", "phase2", "flows.phase2:run_phase2"),
          Phase("3", "phase3", "flows.phase3:run_phase3"),
          Phase("mix", "mixture", "flows.mixture:run_mixture")]


def require(run, marker_stage: str, phase: str, before: str) -> None:
    """Refuse phase ``phase`` when the output of phase ``before`` (the marker of its last
    stage, ``marker_stage``) is missing."""
    if not run.exists(f"_stages/{marker_stage}/_SUCCESS"):
        raise MissingPhaseInput(f"phase {phase} needs a phase-{before} output under "
                                f"{run.output_uri} (run --phases {before} first, with the "
                                "same config)")
