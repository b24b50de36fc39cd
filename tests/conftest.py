"""Shared fixtures: one local Ray for the session, an S3 server on 127.0.0.1 (moto's
server mode), and the small Stack-layout corpus of tests/corpus.py."""

from __future__ import annotations

import os
import socket
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))
os.environ.setdefault("RAY_DATA_DISABLE_PROGRESS_BARS", "1")


def free_port() -> int:
    return free_ports(1)[0]


def free_ports(n: int) -> list[int]:
    """``n`` distinct free ports: all bound at once, so the system cannot hand one out
    twice (ports asked for one at a time can repeat: a Ray head then refuses to start)."""
    socks = [socket.socket() for _ in range(n)]
    try:
        for s in socks:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


@pytest.fixture(scope="session")
def ray_local():
    import ray

    from flows.runtime import export_repo_path

    export_repo_path()  # the workers' environment of a local run of the flow
    ray.init(address="local", num_cpus=2, object_store_memory=1 << 30,
             include_dashboard=False, log_to_driver=False)
    import ray.data

    ray.data.DataContext.get_current().enable_progress_bars = False
    yield ray
    ray.shutdown()


@pytest.fixture(scope="session")
def s3_server():
    """A real S3 API on 127.0.0.1; yields its endpoint URL and test credentials."""
    from moto.server import ThreadedMotoServer

    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port)
    server.start()
    creds = {"endpoint_url": f"http://127.0.0.1:{port}", "access_key_id": "AKIATESTKEY7Q2X",
             "secret_access_key": "s3cr3t-Value-9fK2pLx", "region": "us-east-1"}
    yield creds
    server.stop()


@pytest.fixture(scope="session")
def stack_corpus(tmp_path_factory):
    from corpus import make_stack_corpus

    root = tmp_path_factory.mktemp("stack")
    expected = make_stack_corpus(str(root))
    return root, expected


@pytest.fixture(scope="session")
def embedded_run(tmp_path_factory):
    """`python flows/arctic.py` on the embedded config, every phase and the mixture, with a
    smaller sample corpus and a phase-3 budget of one short wave (the defaults take ~20 min
    on two cores). Yields (output dir, sample dir, the finished process)."""
    import subprocess

    import yaml

    tmp = tmp_path_factory.mktemp("embedded")
    base = yaml.safe_load((ROOT / "flows/configs/embedded.yaml").read_text())
    assert base["phases"] == ["1", "2", "3", "mix"]  # what the README's command runs
    base["sample"].update(max_bytes=3_000_000, max_repo_bytes=400_000,
                          cache_dir=str(tmp / "sample"))
    base["ray"]["object_store_memory_mb"] = 800
    base["phase3"].update(budget_tokens=600, max_tokens=384, max_waves=2,
                          max_requests_per_wave=16, min_requests_per_wave=16,
                          batch_requests=16)
    cfg = tmp / "small.yaml"
    cfg.write_text(yaml.safe_dump(base))
    out = tmp / "out"
    res = subprocess.run([sys.executable, "flows/arctic.py", "--config", str(cfg),
                          "--output", str(out)], cwd=ROOT, capture_output=True, text=True,
                         timeout=1500)
    assert res.returncode == 0, res.stderr[-4000:]
    return out, tmp / "sample", res
