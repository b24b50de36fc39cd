"""Autoscaling from zero: the node groups of ``cluster/aws.yaml``, scaled down, under Ray's
fake multi-node autoscaler on this machine, and the whole flow submitted to it with
``ray job submit``.

    python benchmarks/autoscaling.py [--phases 1,2,3,mix]

Every group starts at ``min_workers: 0``: the head (no CPU) runs only the job's driver,
the flow's demand brings up ``cpu_worker`` nodes for phase 1, the ``gpu_annotator`` group
for phase 2's pool and ``gpu_rewriter`` for phase 3's, and idle nodes leave after the idle
timeout. Each group keeps the resources it has in ``cluster/aws.yaml`` (``CPU: 0`` and its
custom resource on the GPU groups), with one CPU or one logical GPU per node, and
``max_workers`` cut to fit two cores. Input and output are on an S3 server on 127.0.0.1.
Recorded: every node's type, when it came up and left, the stage it came up for, and which
node type ran each kind of task (Ray's state API); the job's own log lines. Writes
``benchmarks/results/autoscaling.md`` and ``autoscaling.json``.

Why a benchmark and not a CI test: the run takes several minutes of node start-ups and
idle timeouts on two cores, and Ray's fake provider starts real raylets that would
compete with the rest of the suite.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))
RESULTS = ROOT / "benchmarks/results"

#: per group: CPUs or GPUs per fake node (one of each kind fits two cores) and max workers
SCALE = {"cpu_worker": ({"CPU": 1}, 2), "gpu_annotator": ({"GPU": 1}, 1),
         "gpu_rewriter": ({"GPU": 1}, 1)}
#: long enough that no node leaves mid-run: the fake provider's nodes share one session
#: directory, and in tries where nodes left mid-run the job's unpacked working directory
#: vanished under the other nodes' workers (a fake-provider artefact, not a cloud one)
IDLE_TIMEOUT_MIN = 1.5


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def fake_config(gcs_port: int) -> dict:
    """cluster/aws.yaml's node types for Ray's fake multi-node provider, scaled down."""
    aws = yaml.safe_load((ROOT / "cluster/aws.yaml").read_text())
    types = {}
    for name, t in aws["available_node_types"].items():
        if name == aws["head_node_type"]:
            continue
        res = dict(t["resources"])
        unit, max_workers = SCALE[name]
        for k in ("CPU", "GPU"):
            if res.get(k):
                res[k] = unit.get(k, 0)
        # custom resources follow the GPUs (1 per logical GPU here)
        for k in list(res):
            if k not in ("CPU", "GPU"):
                res[k] = res.get("GPU", 1)
        res["object_store_memory"] = 300 * 2 ** 20
        types[name] = {"resources": res, "node_config": {}, "min_workers": 0,
                       "max_workers": max_workers}
    types["ray.head.default"] = {"resources": {"CPU": 0}, "node_config": {},
                                 "max_workers": 0}
    return {"cluster_name": "arctic-fake", "max_workers": sum(v[1] for v in SCALE.values()),
            "upscaling_speed": 1.0, "idle_timeout_minutes": IDLE_TIMEOUT_MIN,
            # the fake provider starts nodes in-process: no SSH updaters to run on them
            "provider": {"type": "fake_multinode", "gcs_address": f"127.0.0.1:{gcs_port}",
                         "launch_multiple": True, "use_node_id_as_ip": True,
                         "disable_node_updaters": True, "disable_launch_config_check": True},
            "auth": {"ssh_user": "ubuntu"}, "available_node_types": types,
            "head_node_type": "ray.head.default", "file_mounts": {},
            "cluster_synced_files": [], "file_mounts_sync_continuously": False,
            "initialization_commands": [], "setup_commands": [],
            "head_setup_commands": [], "worker_setup_commands": [],
            "head_start_ray_commands": [], "worker_start_ray_commands": []}


def node_type(resources: dict) -> str:
    if resources.get("annotator_gpu"):
        return "gpu_annotator"
    if resources.get("rewriter_gpu"):
        return "gpu_rewriter"
    return "cpu_worker" if resources.get("CPU") else "head"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--phases", default="1,2,3,mix")
    p.add_argument("--out", default=str(RESULTS / "autoscaling.md"))
    args = p.parse_args(argv)
    from moto.server import ThreadedMotoServer

    from corpus import fixed_head, make_stack_corpus
    from test_flow import s3_client, upload_dir

    tmp = Path(tempfile.mkdtemp(prefix="rfa"))
    s3port = _port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=s3port)
    server.start()
    creds = {"endpoint_url": f"http://127.0.0.1:{s3port}", "access_key_id": "AKIAFAKE",
             "secret_access_key": "fake-secret", "region": "us-east-1"}
    make_stack_corpus(str(tmp / "stack"))
    client = s3_client(creds)
    client.create_bucket(Bucket="auto")
    upload_dir(client, "auto", "the-stack", str(tmp / "stack"))
    fixed_head(tmp / "head.json")
    cluster_cfg = yaml.safe_load((ROOT / "flows/configs/cluster.yaml").read_text())
    flow_cfg = {"s3": creds, "ray": {"address": None},
                "phase2": {"head": "/tmp/arctic-autoscaling-head.json", "budget_ratio": 0.3,
                           "epochs": 2, "bins": 64, "threads": 1, "actors": 1,
                           "cpus_per_actor": 0, "gpus_per_actor": 1,
                           "resources": cluster_cfg["phase2"]["resources"] and
                           {k: 1 for k in cluster_cfg["phase2"]["resources"]}},
                "phase3": {"budget_tokens": 300, "max_tokens": 256, "max_waves": 1,
                           "max_requests_per_wave": 8, "min_requests_per_wave": 8,
                           "batch_requests": 8, "cpus_per_actor": 0, "gpus_per_actor": 1,
                           "resources": {k: 1 for k in cluster_cfg["phase3"]["resources"]}}}
    shutil.copy(tmp / "head.json", "/tmp/arctic-autoscaling-head.json")
    cfg_path = ROOT / ".autoscaling-flow.yaml"  # inside the working dir the job uploads
    cfg_path.write_text(yaml.safe_dump(flow_cfg))
    gcs, dash = _port(), _port()
    scaler = tmp / "autoscaler.yaml"
    scaler.write_text(yaml.safe_dump(fake_config(gcs)))
    from multinode import LOOPBACK_ENV

    # loopback only: the head, the fake nodes and the job's driver keep 127.0.0.1
    env = {**os.environ, "RAY_FAKE_CLUSTER": "1", "RAY_TMPDIR": str(tmp / "ray"),
           **LOOPBACK_ENV, "PYTHONPATH": str(ROOT), "MIMALLOC_PURGE_DELAY": "0",
           "RAY_MAX_LIMIT_FROM_API_SERVER": "100000"}
    env.pop("RAY_ADDRESS", None)
    ray_bin = shutil.which("ray") or os.path.join(os.path.dirname(sys.executable), "ray")
    head = subprocess.Popen(
        [ray_bin, "start", "--head", "--block", f"--port={gcs}", "--num-cpus=0",
         "--node-ip-address=127.0.0.1", f"--autoscaling-config={scaler}",
         "--include-dashboard=true", "--dashboard-host=127.0.0.1", f"--dashboard-port={dash}",
         "--object-store-memory=300000000", "--disable-usage-stats",
         f"--dashboard-agent-listen-port={_port()}", f"--metrics-export-port={_port()}",
         f"--runtime-env-agent-port={_port()}"],
        env=env, stdout=open(tmp / "head.log", "w"), stderr=subprocess.STDOUT,
        start_new_session=True)
    url = f"http://127.0.0.1:{dash}"
    try:
        from ray.util.state import list_nodes, list_tasks

        deadline = time.time() + 120
        while True:
            try:
                list_nodes(address=url)
                break
            except Exception:
                if time.time() > deadline:
                    raise
                time.sleep(1)
        t0 = time.time()
        job = subprocess.Popen(
            [ray_bin, "job", "submit", f"--address={url}", "--working-dir", str(ROOT),
             "--runtime-env", str(ROOT / "cluster/runtime_env.yaml"), "--", "python", "flows/arctic.py", "--config", cfg_path.name, "--input",
             "s3://auto/the-stack", "--output", "s3://auto/run", "--phases", args.phases],
            env={**env, "RAY_FAKE_CLUSTER": ""}, stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT, text=True)
        lines: list[tuple[float, str]] = []
        import threading

        def pump():
            for line in job.stdout:
                lines.append((round(time.time() - t0, 1), line.rstrip()))
        reader = threading.Thread(target=pump, daemon=True)
        reader.start()
        seen: dict[str, dict] = {}
        finished = None
        while True:
            now = round(time.time() - t0, 1)
            for n in list_nodes(address=url, detail=True, limit=1000):
                kind = node_type(n.resources_total or {})
                rec = seen.setdefault(n.node_id, {"type": kind, "up_s": None, "down_s": None})
                if n.state == "ALIVE" and rec["up_s"] is None:
                    rec["up_s"] = now
                if n.state == "DEAD" and rec["down_s"] is None:
                    rec["down_s"] = now
            if finished is None and job.poll() is not None:
                finished = now
            alive = [r for r in seen.values() if r["type"] != "head" and r["down_s"] is None]
            if finished is not None and not alive:
                break
            if finished is not None and now - finished > 300:
                break  # scale-down did not happen in 5 minutes: reported as such
            time.sleep(1)
        reader.join(timeout=10)
        tasks = list_tasks(address=url, limit=100_000, detail=True,
                           raise_on_missing_output=False)
        placement: dict[str, set] = {}
        for t in tasks:
            if t.node_id in seen:
                kind = seen[t.node_id]["type"]
                name = re.sub(r"\(.*", "", t.name) if "MapWorker" not in t.name else t.name
                placement.setdefault(kind, set()).add(name[:80])
        stage_at = {}
        for at, line in lines:
            m = re.search(r"\[arctic\s+[\d.]+s\] (\w+): started", line)
            if m:
                stage_at.setdefault(m.group(1), at)
        result = {"rc": job.returncode, "finished_s": finished, "nodes": list(seen.values()),
                  "stage_started_s": stage_at,
                  "placement": {k: sorted(v) for k, v in placement.items()},
                  "idle_timeout_s": IDLE_TIMEOUT_MIN * 60,
                  "job_tail": [line for _, line in lines[-25:]]}
    finally:
        os.killpg(head.pid, signal.SIGTERM)
        try:
            head.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(head.pid, signal.SIGKILL)
        server.stop()
        cfg_path.unlink(missing_ok=True)
    (RESULTS / "autoscaling.json").write_text(json.dumps(result, indent=1) + "\n")
    text = render(result, args.phases)
    Path(args.out).write_text(text)
    print(text)
    return 0 if result["rc"] == 0 else 1


def render(r: dict, phases: str) -> str:
    first_stage = {"cpu_worker": "ingest", "gpu_annotator": "score",
                   "gpu_rewriter": "synth_wave_0"}
    lines = ["# Autoscaling from zero (Ray's fake multi-node provider)", "",
             f"Command: `python benchmarks/autoscaling.py --phases {phases}`. The node groups "
             "of `cluster/aws.yaml` with their resources (GPU groups: `CPU: 0` and their "
             "custom resource), one CPU or one logical GPU per node, every group from 0, "
             f"idle timeout {r['idle_timeout_s']:.0f} s; the flow submitted with `ray job "
             "submit --working-dir .`, input and output on an S3 server on 127.0.0.1. "
             f"Job exit code: {r['rc']}, finished at {r['finished_s']} s.", "",
             "| node type | came up at s | for stage (started at s) | scale-up s | left at s | "
             "left s after the job ended |", "| --- " * 6 + "|"]
    for n in sorted(r["nodes"], key=lambda n: (n["up_s"] or 0)):
        if n["type"] == "head":
            continue
        stage = first_stage[n["type"]]
        started = r["stage_started_s"].get(stage)
        up = n["up_s"]
        lines.append(f"| {n['type']} | {up} | {stage} ({started}) | "
                     f"{round(up - started, 1) if up is not None and started is not None else '-'}"
                     f" | {n['down_s']} | "
                     f"{round(n['down_s'] - r['finished_s'], 1) if n['down_s'] else 'stayed'} |")
    lines += ["", "Where each kind of task and actor ran (Ray's state API):", ""]
    for kind, names in sorted(r["placement"].items()):
        lines.append(f"- **{kind}**: " + ", ".join(f"`{n}`" for n in names))
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
