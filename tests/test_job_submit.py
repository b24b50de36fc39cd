"""`ray job submit --working-dir . -- python flows/arctic.py ...` against a `ray start
--head` cluster on this machine: the production entry point works unchanged."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.request

import pyarrow.dataset as pads
import pytest

from conftest import ROOT, free_ports

pytestmark = pytest.mark.slow


def _start_head(temp_dir=None):
    """`ray start --head --block` (its own ports; ``temp_dir`` None: Ray's default, where
    the head registers itself as the machine's current cluster); yields (ray, dashboard
    URL, env, port) and stops only this head."""
    ray_bin = shutil.which("ray") or os.path.join(os.path.dirname(sys.executable), "ray")
    port, dash, agent_http, agent_grpc, metrics, runtime_env = free_ports(6)
    env = {**os.environ, "RAY_AUTH_MODE": "disabled"}
    env.pop("RAY_ADDRESS", None)
    proc = subprocess.Popen(
        [ray_bin, "start", "--head", "--block", f"--port={port}", "--num-cpus=2",
         "--object-store-memory=800000000", "--include-dashboard=true",
         "--dashboard-host=127.0.0.1", f"--dashboard-port={dash}",
         *([f"--temp-dir={temp_dir}"] if temp_dir else []), "--disable-usage-stats",
         # own agent ports: another Ray on this machine (the session's) holds the defaults
         f"--dashboard-agent-listen-port={agent_http}",
         f"--dashboard-agent-grpc-port={agent_grpc}",
         f"--metrics-export-port={metrics}",
         f"--runtime-env-agent-port={runtime_env}"],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{dash}"
    deadline = time.time() + 120
    while time.time() < deadline:
        try:
            with urllib.request.urlopen(f"{url}/api/version", timeout=2):
                break
        except OSError:
            if proc.poll() is not None:
                raise RuntimeError(proc.stdout.read().decode()) from None
            time.sleep(1)
    else:
        raise TimeoutError("ray head did not come up")
    yield ray_bin, url, env, port
    os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=60)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)


@pytest.fixture
def ray_head(tmp_path_factory):
    """A Ray head in a temp dir of its own (no other Ray finds it)."""
    for ray_bin, url, env, _ in _start_head(tmp_path_factory.mktemp("rh")):
        yield ray_bin, url, env


def test_ray_job_submit_runs_the_flow(ray_head, stack_corpus, tmp_path):
    ray_bin, url, env = ray_head
    root, expected = stack_corpus
    out = tmp_path / "job-out"
    cfg = tmp_path / "job.yaml"  # phase 1 and its mixture (phases 2-3 have their own tests)
    cfg.write_text("mixture:\n  include: ['1']\n")
    cmd = [ray_bin, "job", "submit", "--address", url, "--working-dir", str(ROOT), "--",
           "python", "flows/arctic.py", "--config", str(cfg), "--input", str(root),
           "--output", str(out), "--phases", "1,mix"]
    for _ in range(30):  # the head's job agent may come up after its dashboard
        res = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=900)
        log = res.stdout + res.stderr
        if "No available agent to submit job" not in log:
            break
        time.sleep(2)
    if res.returncode != 0:
        (tmp_path.parent / "job.log").write_text(log)
    assert res.returncode == 0, log[-5000:]
    assert "succeeded" in log.lower(), log[-3000:]
    assert "conservation: input rows" in log and "OK" in log
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["phase1"]["conservation"]["ok"]
    # the mixture's shards were written by the cluster's workers, as the manifest lists them
    shards = manifest["mixture"]["phases"]["1"]["shards"]
    assert shards and all((out / s["path"]).stat().st_size == s["bytes"] for s in shards)
    docs = pads.dataset(out / "phase1").to_table()
    ledger = pads.dataset(out / "removed").to_table()
    n_docs = sum(len(x) for x in docs.column("file_ids").to_pylist())
    assert n_docs + ledger.num_rows == len(expected)


def test_embedded_cli_runs_its_own_ray_beside_a_registered_one(stack_corpus, tmp_path):
    """A `ray start` head registered as this machine's current cluster (Ray's default temp
    dir) does not capture the CLI: with no address given it starts a Ray of its own."""
    from ray._private.utils import get_ray_address_file

    address_file = get_ray_address_file(None)
    before = open(address_file).read() if os.path.exists(address_file) else None
    head = _start_head()
    try:
        _, _, env, port = next(head)
        deadline = time.time() + 60  # `ray start` registers itself after its services
        while not (os.path.exists(address_file) and open(address_file).read().strip()
                   .endswith(f":{port}")) and time.time() < deadline:
            time.sleep(0.5)
        assert open(address_file).read().strip().endswith(f":{port}")  # registered
        root, expected = stack_corpus
        out = tmp_path / "out"
        res = subprocess.run([sys.executable, "flows/arctic.py", "--input", str(root),
                              "--output", str(out), "--phases", "1"], cwd=ROOT, env=env,
                             capture_output=True, text=True, timeout=900)
        assert res.returncode == 0, res.stderr[-5000:]
        assert "started a local Ray" in res.stderr and "connected to Ray" not in res.stderr
        manifest = json.loads((out / "manifest.json").read_text())
        assert manifest["phase1"]["input_rows"] == len(expected)
    finally:
        next(head, None)
        if before is None and os.path.exists(address_file):
            os.remove(address_file)  # the registration of the head this test stopped
        elif before is not None:
            with open(address_file, "w") as f:
                f.write(before)
