"""Worker processes: the environment every worker gets (local Ray and a cluster job), and
the benchmarks' split of a worker's memory into its heap and Ray's object-store pages."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np

from conftest import ROOT
from flows.runtime import WORKER_ENV, worker_runtime_env


def test_worker_runtime_env_leaves_what_the_job_sets(monkeypatch):
    for key in WORKER_ENV:
        monkeypatch.delenv(key, raising=False)
    assert worker_runtime_env() == {"env_vars": dict(WORKER_ENV)}
    key = next(iter(WORKER_ENV))
    monkeypatch.setenv(key, "250")  # the job's runtime env set it: Ray would refuse both
    assert key not in worker_runtime_env()["env_vars"]


def test_a_local_ray_started_by_the_flow_gives_tasks_the_worker_env(tmp_path):
    script = f"""
import json, os, sys
sys.path.insert(0, {str(ROOT)!r})
for k in {sorted(WORKER_ENV)!r}:
    os.environ.pop(k, None)
import ray
from flows.runtime import init_ray
from flows.settings import load_settings
settings = load_settings(None, {{"output": {str(tmp_path / "out")!r}}})
assert init_ray(settings, log=lambda m: None)
env = ray.get(ray.remote(lambda: dict(os.environ)).remote())
print(json.dumps({{k: env.get(k) for k in {sorted(WORKER_ENV)!r}}}))
ray.shutdown()
"""
    env = {k: v for k, v in __import__("os").environ.items() if k != "RAY_ADDRESS"}
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                         env=env, timeout=300, cwd=tmp_path)
    assert out.returncode == 0, out.stderr[-3000:]
    assert json.loads(out.stdout.strip().splitlines()[-1]) == WORKER_ENV


def test_memory_split_counts_object_store_pages_apart_from_the_heap(ray_local):
    from benchmarks.common import _memory_kb

    @ray_local.remote
    class Holder:
        def pid(self):
            import os
            return os.getpid()

        def put(self, mb: int):
            self.ref = ray_local.put(np.ones(mb << 20, dtype=np.uint8))  # written by this worker
            return True

    h = Holder.remote()
    pid = ray_local.get(h.pid.remote())
    heap0, store0 = _memory_kb(pid)
    ray_local.get(h.put.remote(64))
    heap1, store1 = _memory_kb(pid)
    assert heap0 > 10_000  # a Python process with Ray loaded
    # the 64 MB block, in the store's shared memory: private pages of this worker, less any
    # the store had already handed to another process (a full CI run once counted 59.8 MB)
    assert store1 - store0 >= 32 << 10
    assert heap1 - heap0 < 32 << 10  # not counted again as heap (the array itself is freed)
    ray_local.kill(h)
