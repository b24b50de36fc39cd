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
import os
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
    p.add_argument("--verbose", action="store_true",
                   help="print Ray's, Ray Data's and the workers' (vLLM's) messages too; "
                   "without it they go to OUT/logs/ only")
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
    from flows.logs import Console, copy_ray_logs, ray_session_dir
    from flows.phases import MissingPhaseInput
    from flows.runtime import Run, init_ray
    from operators.io import UnreadableInput

    log_dir, remote_logs = local_log_dir(settings)
    console = Console(log_dir, verbose=args.verbose)
    t0 = time.time()
    session_dir = None
    try:
        input_uri = resolve_input(settings, console.say)
        console.capture()
        started_ray = init_ray(settings, console.say, log_to_driver=args.verbose)
        if started_ray and not settings.ray.address and not os.environ.get("RAY_ADDRESS"):
            session_dir = ray_session_dir()
        console.say(f"logs: {remote_logs or log_dir} (--verbose prints them here)")
        try:
            run = Run(settings, input_uri, console.say, console)
            run.log(f"input {input_uri} → output {settings.output}; phases "
                    f"{','.join(settings.phases)}")
            sections = run_phases(run)
            manifest, report = write_outputs(run, sections, t0)
        except MissingPhaseInput as exc:
            console.say(f"arctic: {exc}")
            return 4
        except UnreadableInput as exc:  # read.strict: the first unreadable file stops it
            line = next((ln for ln in str(exc).splitlines()
                         if "cannot read input file" in ln), str(exc).splitlines()[-1])
            console.say(f"arctic: {line.strip()} (read.strict is set)")
            return 5
        finally:
            if started_ray:
                ray.shutdown()
    finally:
        console.close()
        copy_ray_logs(session_dir, log_dir)
        if remote_logs:
            upload_logs(settings, log_dir, remote_logs)
    print_summary(run, manifest, report, console.warning_lines())
    for phase in ("phase1", "phase3"):
        if phase in sections and not sections[phase]["conservation"]["ok"]:
            print(f"arctic: {phase} conservation check failed: " +
                  json.dumps(sections[phase]["conservation"]), file=sys.stderr)
            return 3
    return 0


def local_log_dir(settings: Settings) -> tuple[str, str | None]:
    """Where this run's logs are written: ``OUT/logs`` for a local output; for an S3 one a
    local folder, uploaded to ``OUT/logs`` at the end (the second value)."""
    from operators import storage

    out = settings.output
    if "://" not in out or out.startswith("file://"):
        return os.path.join(out.removeprefix("file://"), "logs"), None
    import tempfile

    return tempfile.mkdtemp(prefix="arctic-logs-"), storage.join(out, "logs")


def upload_logs(settings: Settings, log_dir: str, uri: str) -> None:
    from operators import storage

    fs, root = storage.resolve(uri, settings.s3)
    for folder, _, names in os.walk(log_dir):
        for name in names:
            path = os.path.join(folder, name)
            rel = os.path.relpath(path, log_dir).replace(os.sep, "/")
            with open(path, "rb") as f:
                storage.write_bytes(fs, f"{root}/{rel}", f.read())


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
