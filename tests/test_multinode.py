"""The flow on a Ray cluster of several nodes (tests/multinode.py: a 0-CPU head for the
driver, 1-CPU workers, an annotator node and a rewriter node with a logical GPU, no CPU
and their group's custom resource, as cluster/aws.yaml has them), input and output on the
S3 server, as nodes share no disk in production.

- The whole flow (1, 2, 3, mix) gives the documents, ledger and mixture shards of a
  one-node run, and its work lands where it should: CPU-only tasks on CPU workers only, the
  annotator pool on the annotator node, the rewriter pool on the rewriter node.
- A node killed (its raylet and every process on it, no graceful exit) while a task is in
  flight on it, in a map (ingest), a shuffle (exact dedup's reduce), an actor pool (the
  annotator) and the mixture's shard writes: a replacement node joins, as an autoscaler
  would start one, and the run ends with the same output and exact conservation.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pyarrow.dataset as pads
import pyarrow.fs as pafs
import pytest
import yaml

from conftest import ROOT
from corpus import fixed_head
from multinode import LOOPBACK_ENV
from test_flow import s3_client, upload_dir

pytestmark = pytest.mark.slow

#: a small run of every phase: the test corpus, a fixed head, a phase-3 slice of one wave.
#: One request per engine call: vLLM's output for a request may change with the other
#: requests of its batch, and which rows make up a batch follows the timing of blocks
#: (a cluster's, a lost node's retry), so only single-request calls are the same in
#: every run (a CI run saw one of eight answers change with batches of eight)
BASE = {
    "ray": {"object_store_memory_mb": 600},
    "phase2": {"budget_ratio": 0.3, "epochs": 2, "bins": 64, "threads": 1},
    "phase3": {"budget_tokens": 300, "max_tokens": 256, "max_waves": 1,
               "max_requests_per_wave": 8, "min_requests_per_wave": 8, "batch_requests": 1},
}
#: the GPU stages as flows/configs/cluster.yaml places them (a logical GPU per node here)
ON_GPU_NODES = {
    "phase2": {"cpus_per_actor": 0, "gpus_per_actor": 1, "resources": {"annotator_gpu": 1}},
    "phase3": {"cpus_per_actor": 0, "gpus_per_actor": 1, "resources": {"rewriter_gpu": 1}},
}


class MultiNode:
    """tests/multinode.py in a process of its own, driven line by line."""

    def __init__(self, env: dict, log: Path):
        self.log = open(log, "w")
        self.proc = subprocess.Popen([sys.executable, str(ROOT / "tests/multinode.py")],
                                     cwd=ROOT, env=env, stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, stderr=self.log, text=True)
        first = self._read()
        self.address, self.dashboard = first["address"], first["dashboard"]
        self.kinds: dict[str, str] = first["nodes"]

    def _read(self) -> dict:
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"the cluster process exited: see {self.log.name}")
        return json.loads(line)

    def cmd(self, **kw) -> dict:
        self.proc.stdin.write(json.dumps(kw) + "\n")
        self.proc.stdin.flush()
        out = self._read()
        assert "error" not in out, out
        if "added" in out:
            self.kinds[out["added"]] = out["kind"]
        return out

    def stop(self) -> None:
        try:
            self.cmd(op="stop")
            self.proc.wait(timeout=120)
        except Exception:
            self.proc.kill()
        self.log.close()


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("multinode")
    hold = tmp / "hold"
    hold.mkdir()
    env = {**os.environ, "ARCTIC_HOLD": str(hold)}
    env.pop("ARCTIC_FAULTS", None)
    mn = MultiNode(env, tmp / "cluster.log")
    mn.hold_dir = hold
    yield mn
    mn.stop()


@pytest.fixture(scope="module")
def setup(s3_server, stack_corpus, tmp_path_factory):
    """The corpus on S3, a fixed head, and the configs of the one-node and cluster runs."""
    root, _ = stack_corpus
    tmp = tmp_path_factory.mktemp("mn-config")
    client = s3_client(s3_server)
    client.create_bucket(Bucket="multinode")
    upload_dir(client, "multinode", "the-stack", str(root))
    fixed_head(tmp / "head.json")
    s3 = {k: s3_server[k] for k in ("endpoint_url", "access_key_id", "secret_access_key",
                                    "region")}
    base = json.loads(json.dumps(BASE))
    base["phase2"]["head"] = str(tmp / "head.json")
    base["s3"] = s3
    one = tmp / "one.yaml"
    one.write_text(yaml.safe_dump(base))
    many = json.loads(json.dumps(base))
    for phase, v in ON_GPU_NODES.items():
        many[phase].update(v)
    full = tmp / "many.yaml"
    full.write_text(yaml.safe_dump(many))
    many["mixture"] = {"include": ["1", "2"]}
    lossy = tmp / "lossy.yaml"
    lossy.write_text(yaml.safe_dump(many))
    fs = pafs.S3FileSystem(endpoint_override=s3["endpoint_url"].split("//")[1], scheme="http",
                           access_key=s3["access_key_id"], secret_key=s3["secret_access_key"],
                           region="us-east-1")
    return {"root": root, "one": one, "many": full, "lossy": lossy, "fs": fs,
            "input": "s3://multinode/the-stack"}


def flow(cfg, inp, out, phases, address=None, wait=True):
    cmd = [sys.executable, "flows/arctic.py", "--config", str(cfg), "--input", str(inp),
           "--output", str(out), "--phases", phases]
    env = {**os.environ, "RAY_ADDRESS": ""}
    if address:  # the test cluster's loopback address and auth mode (tests/multinode.py)
        cmd += ["--ray-address", address]
        env.update(LOOPBACK_ENV)
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    if not wait:
        return proc
    out_text, _ = proc.communicate(timeout=1500)
    assert proc.returncode == 0, out_text[-4000:]
    return out_text


def snapshot(fs, root: str, phases=("phase1", "phase2", "phase3")) -> dict:
    """What must not depend on the cluster's shape or on lost nodes: every output's rows
    (sorted), the ledger, the mixture's shards (sha256) and the conservation checks."""
    def rows(rel, key):
        path = f"{root}/{rel}"
        if fs.get_file_info(path).type == pafs.FileType.NotFound:
            return None
        return pads.dataset(path, filesystem=fs, format="parquet").to_table().sort_by(
            key).to_pylist()

    with fs.open_input_stream(f"{root}/manifest.json") as f:
        manifest = json.loads(f.read())
    mix = manifest["mixture"]
    out = {p: rows(p, [("doc_id", "ascending")]) for p in phases}
    out["ledger"] = rows("removed", [("id", "ascending"), ("stage", "ascending")])
    out["shards"] = {s["path"]: s["sha256"] for p in mix["phases"].values()
                     for s in p["shards"]}
    out["conservation"] = {p: manifest[p]["conservation"] for p in ("phase1", "phase3")
                           if p in manifest}
    return out


@pytest.fixture(scope="module")
def one_node(setup):
    """The reference: the same config and data on one node (a local Ray)."""
    flow(setup["one"], setup["input"], "s3://multinode/runs/one", "1,2,3,mix")
    return snapshot(setup["fs"], "multinode/runs/one")


def _tasks_by_node(dashboard: str) -> list[dict]:
    from ray.util.state import list_tasks

    return [{"node": t.node_id, "name": t.name, "type": t.type}
            for t in list_tasks(address=dashboard, limit=100_000, detail=True,
                                raise_on_missing_output=False) if t.node_id]


@pytest.fixture(scope="module")
def many_nodes(cluster, setup):
    """The same config on the cluster, undisturbed, input and output on S3."""
    log = flow(setup["many"], setup["input"], "s3://multinode/runs/many", "1,2,3,mix",
               address=cluster.address)
    assert "connected to Ray at" in log
    return snapshot(setup["fs"], "multinode/runs/many")


def test_whole_flow_on_many_nodes_equals_one_node(cluster, many_nodes, one_node):
    many = many_nodes
    assert many["conservation"] == one_node["conservation"]
    assert all(c["ok"] for c in many["conservation"].values())
    for part in ("phase1", "ledger", "phase2", "phase3", "shards"):
        assert many[part] == one_node[part], part
    # where the work ran: CPU-only tasks never on the GPU node types, each pool on its own
    # (the data's work: tasks and map actors; Ray Data's own 0-CPU bookkeeping actors,
    # such as its stats actor, may sit anywhere)
    tasks = [t for t in _tasks_by_node(cluster.dashboard)
             if t["type"] == "NORMAL_TASK" or "MapWorker" in t["name"]]
    kind = cluster.kinds
    on = {k: [t for t in tasks if kind.get(t["node"]) == k] for k in set(kind.values())}
    assert on["cpu_worker"] and not on["head"]
    assert on["gpu_annotator"] and all("Scorer" in t["name"] for t in on["gpu_annotator"])
    assert on["gpu_rewriter"] and all("Generator" in t["name"] for t in on["gpu_rewriter"])
    assert not any("Scorer" in t["name"] or "Generator" in t["name"]
                   for t in on["cpu_worker"])


def _kill_when_held(cluster, point: str, proc, replace: bool = True,
                    timeout: float = 600) -> dict:
    """Arm ``point``; when a task holds there, kill its node and start a replacement."""
    hold = cluster.hold_dir
    (hold / point).touch()
    node_file = hold / f"{point}.node"
    deadline = time.time() + timeout
    while not node_file.exists():
        assert proc.poll() is None, f"the run ended before reaching {point}"
        assert time.time() < deadline, f"no task reached {point}"
        time.sleep(0.1)
    node = node_file.read_text()
    kind = cluster.kinds[node]
    killed = cluster.cmd(op="kill", node=node)
    node_file.unlink()
    (hold / f"{point}.claimed").unlink()
    added = cluster.cmd(op="add", kind=kind) if replace else None
    return {"point": point, "kind": kind, "kill_s": killed["seconds"],
            "add_s": added and added["seconds"], "at": time.time()}


@pytest.fixture(scope="module")
def lossless(cluster, setup):
    """The node-loss config (phases 1, 2 and their mixture) undisturbed on the cluster."""
    flow(setup["lossy"], setup["input"], "s3://multinode/runs/lossless", "1,2,mix",
         address=cluster.address)
    return "lossless", snapshot(setup["fs"], "multinode/runs/lossless", ("phase1", "phase2"))


#: kills per run: a map, each kind of shuffle (exact dedup's buckets, LSH buckets, a
#: component round, grouping), the annotator pool, the mixture's shard writes; and the
#: rewriter pool mid-generation, in a run of every phase
CASES = {
    "map-and-shuffles": ("lossless", ["ingest", "shuffle.choose_representatives",
                                      "shuffle.bucket_edges", "shuffle.large_star_step",
                                      "group"]),
    "annotator-pool-and-mixture-write": ("lossless", ["score", "mixture"]),
    "rewriter-pool": ("many", ["generate"]),
}


@pytest.mark.parametrize("case", list(CASES))
def test_node_lost_mid_stage_changes_nothing(cluster, setup, request, case):
    ref_name, points = CASES[case]
    ref_run, reference = (request.getfixturevalue("lossless") if ref_name == "lossless"
                          else ("many", request.getfixturevalue("many_nodes")))
    cfg, phases, parts = ((setup["lossy"], "1,2,mix", ("phase1", "phase2"))
                          if ref_name == "lossless" else
                          (setup["many"], "1,2,3,mix", ("phase1", "phase2", "phase3")))
    out = f"s3://multinode/runs/lost-{case}"
    t = time.time()
    proc = flow(cfg, setup["input"], out, phases, address=cluster.address, wait=False)
    events = [_kill_when_held(cluster, p, proc) for p in points]
    text, _ = proc.communicate(timeout=1500)
    assert proc.returncode == 0, text[-4000:]
    wall = time.time() - t
    times = {}  # the cost of a loss: each stage's seconds, undisturbed and with the loss
    for name, root in (("undisturbed", f"multinode/runs/{ref_run}"),
                       ("lost", out.removeprefix("s3://"))):
        with setup["fs"].open_input_stream(f"{root}/manifest.json") as f:
            times[name] = {k: v["seconds"] for k, v in
                           json.loads(f.read())["stage_seconds"].items()}
    print(json.dumps({"case": case, "events": events, "wall_s": round(wall, 1),
                      "stage_s": times}))
    got = snapshot(setup["fs"], out.removeprefix("s3://"), parts)
    assert all(c["ok"] for c in got["conservation"].values())
    assert got == reference
