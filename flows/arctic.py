"""The Arctic-SnowCoder data flow.

    python flows/arctic.py [--config YAML] [--input URI] [--output URI] [--phases 1,2,3,mix]

With no arguments it runs the embedded default: a local Ray, the sample corpus built from
source code installed on this machine, small packaged models, output in ``./out``. On a
cluster::

    ray job submit --working-dir . -- python flows/arctic.py --config flows/configs/cluster.yaml
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

# `python flows/arctic.py` puts flows/ on sys.path, not the project root
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from flows.settings import Settings, SettingsError, load_settings  # noqa: E402


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="arctic", description=__doc__.split("\n\n")[0])
    p.add_argument("--config", help="YAML settings (default: flows/configs/embedded.yaml)")
    p.add_argument("--input", help="input URI, local or s3:// (default: the sample corpus)")
    p.add_argument("--output", help="output URI, local or s3:// (default: ./out)")
    p.add_argument("--phases", help="comma-separated phases to run: 1,2,3,mix")
    p.add_argument("--resume", action="store_true", default=None,
                   help="skip stages an earlier run finished with the same config")
    p.add_argument("--ray-address", help="Ray cluster address (default: RAY_ADDRESS or local)")
    return p.parse_args(argv)


def resolve_input(settings: Settings, log) -> str:
    if settings.input:
        return settings.input
    from operators.sample_corpus import build_sample_corpus

    s = settings.sample
    return build_sample_corpus(s.cache_dir, max_bytes=s.max_bytes,
                               max_repo_bytes=s.max_repo_bytes,
                               max_file_bytes=s.max_file_bytes, seed=settings.seed, log=log)


def main(argv=None) -> int:
    """Parse → run the phases → manifest and report → print the summary."""
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == ["plan"]:  # arctic-curate plan --input URI ...: predicts, runs nothing
        from flows.plan import main as plan_main

        return plan_main(argv[1:])
    args = parse_args(argv)
    try:
        settings = load_settings(args.config, {
            "input": args.input, "output": args.output,
            "phases": args.phases.split(",") if args.phases else None,
            "resume": args.resume})
        if args.ray_address:
            settings.ray.address = args.ray_address
    except SettingsError as exc:
        print(f"arctic: configuration error: {exc}", file=sys.stderr)
        return 2

    import ray

    from flows.console import print_summary
    from flows.phases import MissingPhaseInput
    from flows.runtime import Run, init_ray
    from operators.io import UnreadableInput

    def log(msg):
        print(msg, file=sys.stderr, flush=True)

    t0 = time.time()
    input_uri = resolve_input(settings, log)
    started_ray = init_ray(settings, log)
    try:
        run = Run(settings, input_uri, log)
        run.log(f"input {input_uri} → output {settings.output}; phases "
                f"{','.join(settings.phases)}")
        sections = run_phases(run)
        manifest, report = write_outputs(run, sections, t0)
    except MissingPhaseInput as exc:
        print(f"arctic: {exc}", file=sys.stderr)
        return 4
    except UnreadableInput as exc:  # read.strict: the first unreadable file stops the run
        line = next((ln for ln in str(exc).splitlines() if "cannot read input file" in ln),
                    str(exc).splitlines()[-1])
        print(f"arctic: {line.strip()} (read.strict is set)", file=sys.stderr)
        return 5
    finally:
        if started_ray:
            ray.shutdown()
    print_summary(run, manifest, report)
    for phase in ("phase1", "phase3"):
        if phase in sections and not sections[phase]["conservation"]["ok"]:
            print(f"arctic: {phase} conservation check failed: " +
                  json.dumps(sections[phase]["conservation"]), file=sys.stderr)
            return 3
    return 0


def run_phases(run) -> dict:
    """The manifest sections of the phases the settings name, in order."""
    from flows.phases import PHASES

    sections: dict = {}
    if "1" in run.settings.phases:
        sections["plan"] = plan_section(run)
    for phase in PHASES:
        if phase.key in run.settings.phases:
            sections[phase.section] = phase.run(run)
    return sections


def plan_section(run) -> dict | None:
    """What the run should take, set against what it took in the report; a plan is
    advice: its failure never stops a run."""
    import ray

    from flows.plan import plan_for_run

    try:
        cpus = int(ray.cluster_resources().get("CPU", 1))
        return plan_for_run(run.settings, run.input_uri, cpus)
    except Exception as exc:  # noqa: BLE001
        run.log(f"plan: not made ({type(exc).__name__}: {exc})")
        return None


def write_outputs(run, sections: dict, t0: float) -> tuple[dict, str]:
    """The manifest (keeping the sections of phases an earlier invocation ran) and the
    report's location."""
    from flows.manifest import write_manifest
    from flows.report import write_report
    from operators import storage

    sections = {k: v for k, v in sections.items() if v is not None}
    sections["wall_time_s"] = round(time.time() - t0, 2)
    if "1" not in run.settings.phases and run.exists("manifest.json"):
        earlier = json.loads(storage.read_bytes(run.fs, run.path("manifest.json")))
        sections = {k: v for k, v in earlier.items()
                    if k.startswith("phase") or k in ("mixture", "plan")} | sections
    manifest = write_manifest(run, sections)
    return manifest, write_report(run, manifest)


if __name__ == "__main__":
    sys.exit(main())
