"""A Ray cluster of several nodes on this machine, shaped like ``cluster/aws.yaml`` (scaled
down), run in a process of its own and driven over stdin/stdout by the tests.

    python tests/multinode.py            # reads one JSON command per line, answers one line

Nodes: a head with no CPU (the drivers connect there), ``cpu_worker`` nodes with one CPU,
a ``gpu_annotator`` node and a ``gpu_rewriter`` node with a logical GPU, no CPU and their
group's custom resource (as the cloud groups have them). Commands: ``{"op": "nodes"}``,
``{"op": "kill", "node": NODE_ID}`` (the node's raylet and everything on it, no graceful
exit: a lost spot instance), ``{"op": "add", "kind": KIND}`` (the replacement an autoscaler
would launch), ``{"op": "stop"}``.

Why a process of its own: ``Cluster`` records its address where a plain ``ray.init()`` of
any other test would find and join it, unless ``RAY_TMPDIR`` is private, and nodes may
only be added from the main thread. The workers inherit this process's environment (the
project on ``PYTHONPATH``, ``ARCTIC_HOLD`` for the node-loss tests).
"""

from __future__ import annotations

import json
import os
import signal
import socket
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

#: node kinds: the groups of cluster/aws.yaml at the size of this machine
KINDS = {
    "cpu_worker": {"num_cpus": 1},
    "gpu_annotator": {"num_cpus": 0, "num_gpus": 1, "resources": {"annotator_gpu": 1}},
    "gpu_rewriter": {"num_cpus": 0, "num_gpus": 1, "resources": {"rewriter_gpu": 1}},
}
#: node death noticed in ~3 s instead of Ray's default 15-30 s
SYSTEM_CONFIG = {"health_check_initial_delay_ms": 0, "health_check_period_ms": 1000,
                 "health_check_timeout_ms": 1000, "health_check_failure_threshold": 2}


#: a process that connects to the test cluster: no token auth, and 127.0.0.1 kept as it is
#: (Ray otherwise swaps a loopback address for the machine's own IP, where nothing of the
#: test cluster listens; the switch is Ray's own, for machines without cluster support)
LOOPBACK_ENV = {"RAY_AUTH_MODE": "disabled", "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0"}


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main() -> int:
    layout = json.loads(sys.argv[1]) if len(sys.argv) > 1 else {
        "cpu_worker": 2, "gpu_annotator": 1, "gpu_rewriter": 1}
    store = int(os.environ.get("MULTINODE_STORE_BYTES", 300 << 20))
    # a private temp root: the address file goes there, not where other Rays look
    os.environ["RAY_TMPDIR"] = tempfile.mkdtemp(prefix="rmn")
    os.environ.update(LOOPBACK_ENV)
    os.environ["RAY_MAX_LIMIT_FROM_API_SERVER"] = "100000"  # every task of a run, listed
    os.environ.pop("RAY_ADDRESS", None)
    os.environ["PYTHONPATH"] = os.pathsep.join(
        [str(ROOT)] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p])
    sys.path.insert(0, str(ROOT))
    from flows.runtime import WORKER_ENV

    for k, v in WORKER_ENV.items():
        os.environ.setdefault(k, v)
    from ray.cluster_utils import Cluster

    dash = _port()
    cluster = Cluster(initialize_head=True, head_node_args={
        "num_cpus": 0, "node_ip_address": "127.0.0.1", "object_store_memory": store,
        "include_dashboard": True, "dashboard_host": "127.0.0.1", "dashboard_port": dash,
        "_system_config": SYSTEM_CONFIG})
    kinds: dict[str, str] = {cluster.head_node.node_id: "head"}
    nodes: dict[str, object] = {}

    def add(kind: str) -> str:
        node = cluster.add_node(node_ip_address="127.0.0.1", object_store_memory=store,
                                **KINDS[kind])
        kinds[node.node_id] = kind
        nodes[node.node_id] = node
        return node.node_id

    for kind, n in layout.items():
        for _ in range(n):
            add(kind)
    cluster.wait_for_nodes()

    def say(obj) -> None:
        print(json.dumps(obj), flush=True)

    say({"address": cluster.address, "dashboard": f"http://127.0.0.1:{dash}",
         "nodes": kinds})
    # a terminated test run ends here too, and takes its nodes with it
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))
    try:
        serve(cluster, kinds, nodes, add, say)
    finally:
        cluster.shutdown()
    say({"stopped": True})
    return 0


def serve(cluster, kinds, nodes, add, say) -> None:
    for line in sys.stdin:
        if not line.strip():
            continue
        cmd = json.loads(line)
        op = cmd["op"]
        try:
            if op == "nodes":
                say({"nodes": kinds})
            elif op == "kill":
                t = time.time()
                cluster.remove_node(nodes.pop(cmd["node"]), allow_graceful=False)
                say({"killed": cmd["node"], "kind": kinds[cmd["node"]],
                     "seconds": round(time.time() - t, 2)})
            elif op == "add":
                t = time.time()
                node_id = add(cmd["kind"])
                cluster.wait_for_nodes()
                say({"added": node_id, "kind": cmd["kind"],
                     "seconds": round(time.time() - t, 2)})
            elif op == "stop":
                return
            else:
                say({"error": f"unknown op {op!r}"})
        except Exception as exc:  # answer, keep serving: the test decides
            say({"error": f"{type(exc).__name__}: {exc}"})


if __name__ == "__main__":
    sys.exit(main())
