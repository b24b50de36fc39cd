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


def summary_lines(manifest: dict) -> list[str]:
    p1 = manifest["phase1"]
    lines = [f"{'stage':<16}{'rows in':>10}{'removed':>10}{'rows out':>10}"
             f"{'tokens in':>13}{'tokens out':>13}"]
    for st in p1["funnel"]:
        tin = st.get("tokens_in")
        tout = st.get("tokens_out")
        lines.append(f"{st['stage']:<16}{st['rows_in']:>10}{st['rows_removed']:>10}"
                     f"{st['rows_out']:>10}{tin if tin is not None else '-':>13}"
                     f"{tout if tout is not None else '-':>13}")
    r = p1.get("redaction")
    if r:
        kinds = ", ".join(f"{k} {v}" for k, v in r["by_kind"].items()) or "none"
        lines.append(f"redacted: {r['total']} values in {r['files_redacted']} files ({kinds})")
    c = p1["conservation"]
    lines.append(f"documents: {p1['documents']}  files in documents: {p1['files_in_documents']}"
                 f"  tokens: {p1['tokens']}")
    lines.append(f"conservation: input rows {c['input_rows']} = {c['rows_in_documents']} in "
                 f"documents + {c['removed_rows']} removed: {'OK' if c['ok'] else 'VIOLATED'}")
    return lines


def mixture_lines(mix: dict) -> list[str]:
    """The mixture's token table: tokens per phase and source, and the phase shares."""
    lines = [f"{'mixture':<10}{'source':<14}{'rows':>8}{'tokens':>12}{'share':>8}"
             f"{'shards':>8}"]
    for phase, p in mix["phases"].items():
        for i, (src, v) in enumerate(p["sources"].items()):
            lines.append(f"{'phase ' + phase if i == 0 else '':<10}{src:<14}{v['rows']:>8}"
                         f"{v['tokens']:>12}{v['tokens'] / (p['tokens'] or 1):>8.1%}"
                         f"{p['n_shards'] if i == 0 else '':>8}")
    lines.append(f"{'total':<24}{mix['rows']:>8}{mix['tokens']:>12}  phases "
                 + " / ".join(f"{k}: {v:.1%}" for k, v in mix["phase_shares"].items()))
    return lines


def main(argv=None) -> int:
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

    from flows.manifest import phase1_counts, write_manifest
    from flows.phase1 import DEDUP_STAGES, STAGE_ORDER, run_phase1
    from flows.runtime import Run, init_ray

    def log(msg):
        print(msg, file=sys.stderr, flush=True)

    t0 = time.time()
    input_uri = resolve_input(settings, log)
    started_ray = init_ray(settings, log)

    def stop(message: str, code: int) -> int:
        """A run that cannot go on: say why, release the Ray this run started."""
        print(f"arctic: {message}", file=sys.stderr)
        if started_ray:
            ray.shutdown()
        return code
    run = Run(settings, input_uri, log)
    run.log(f"input {input_uri} → output {settings.output}; phases {','.join(settings.phases)}")
    sections = {}
    if "1" in settings.phases:
        from flows.plan import plan_for_run
        from operators.io import UnreadableInput

        try:  # what the run should take, set against what it took in the report
            cpus = int(ray.cluster_resources().get("CPU", 1))
            sections["plan"] = plan_for_run(settings, input_uri, cpus)
        except Exception as exc:  # a plan is advice: its failure never stops a run
            run.log(f"plan: not made ({type(exc).__name__}: {exc})")

        try:
            run_phase1(run)
        except UnreadableInput as exc:  # read.strict: the first unreadable file stops the run
            line = next((ln for ln in str(exc).splitlines() if "cannot read input file" in ln),
                        str(exc).splitlines()[-1])
            return stop(f"{line.strip()} (read.strict is set)", 5)
        sections["phase1"] = phase1_counts(run, STAGE_ORDER, DEDUP_STAGES)
    if "2" in settings.phases or "3" in settings.phases:
        from flows.phase2 import MissingPhaseInput, run_phase2
        from flows.phase3 import run_phase3

        for phase, run_phase in (("2", run_phase2), ("3", run_phase3)):
            if phase not in settings.phases:
                continue
            try:
                sections[f"phase{phase}"] = run_phase(run)
            except MissingPhaseInput as exc:
                return stop(str(exc), 4)
    if "mix" in settings.phases:
        from flows.mixture import MissingMixtureInput, run_mixture

        try:
            sections["mixture"] = run_mixture(run)
        except MissingMixtureInput as exc:
            return stop(str(exc), 4)
    sections["wall_time_s"] = round(time.time() - t0, 2)
    if "1" not in settings.phases and run.exists("manifest.json"):  # keep phase 1's counts
        from operators import storage

        earlier = json.loads(storage.read_bytes(run.fs, run.path("manifest.json")))
        sections = {k: v for k, v in earlier.items()
                    if k.startswith("phase") or k in ("mixture", "plan")} | sections
    manifest = write_manifest(run, sections)
    from flows.report import write_report

    report = write_report(run, manifest)
    for line in summary_lines(manifest) if "phase1" in manifest else []:
        print(line, flush=True)
    if "phase2" in manifest:
        p2 = manifest["phase2"]
        print(f"phase 2: {p2['selected_files']} files, {p2['selected_tokens']} tokens "
              f"selected for a budget of {p2['budget_tokens']} ({p2['budget_error']:+.2%}), "
              f"x{p2['epochs']} epochs; scored {p2['score'].get('files')} files at "
              f"{p2['score'].get('files_per_s')} files/s", flush=True)
    if "phase3" in manifest:
        p3 = manifest["phase3"]
        print(f"phase 3: {p3['conservation']['kept']} synthetic files, "
              f"{p3['selected_tokens']} tokens for a budget of {p3['budget_tokens']} "
              f"({p3['budget_error']:+.2%}) in {len(p3['waves'])} wave(s); "
              f"{p3['output_tokens_per_s']} output tokens/s, validation pass rate "
              f"{p3['validation_pass_rate']}", flush=True)
    if "mixture" in manifest:
        for line in mixture_lines(manifest["mixture"]):
            print(line, flush=True)
    print(f"output: {run.uri('phase1')} (documents), {run.uri('removed')} (removal ledger), "
          + (f"{run.uri('phase2')} (phase 2), " if "phase2" in manifest else "")
          + (f"{run.uri('phase3')} (phase 3), " if "phase3" in manifest else "")
          + (f"{run.uri('mixture')} (training mixture), " if "mixture" in manifest else "")
          + f"{run.uri('manifest.json')}, {report}", flush=True)
    print(f"wall time: {manifest['wall_time_s']:.1f}s", flush=True)
    if started_ray:
        ray.shutdown()
    for phase in ("phase1", "phase3"):
        if phase in sections and not sections[phase]["conservation"]["ok"]:
            print(f"arctic: {phase} conservation check failed: " +
                  json.dumps(sections[phase]["conservation"]), file=sys.stderr)
            return 3
    return 0


if __name__ == "__main__":
    sys.exit(main())
