"""S3 faults: a proxy on 127.0.0.1 in front of the S3 test server answers every 7th request
with 503 SlowDown or a connection reset; the flow's reads and writes retry, and phase 1 and
its mixture come out complete and identical to a run without faults."""

from __future__ import annotations

import pyarrow.dataset as pads
import pyarrow.fs as pafs
import pytest
import yaml

from flows.arctic import main
from flows.verify import verify
from s3proxy import FaultyProxy
from test_flow import s3_client, upload_dir

pytestmark = pytest.mark.slow


def outputs(fs, prefix) -> dict:
    docs = pads.dataset(f"{prefix}/phase1", filesystem=fs).to_table().sort_by("doc_id")
    ledger = pads.dataset(f"{prefix}/removed", filesystem=fs).to_table().sort_by(
        [("id", "ascending"), ("stage", "ascending")])
    problems, summary = verify(fs, prefix)
    assert problems == []
    return {"docs": docs.to_pylist(), "ledger": ledger.to_pylist(), "mixture": summary}


def test_reads_and_writes_retry_through_s3_faults(ray_local, s3_server, stack_corpus,
                                                  tmp_path):
    root, _ = stack_corpus
    client = s3_client(s3_server)
    client.create_bucket(Bucket="faults")
    upload_dir(client, "faults", "the-stack", str(root))
    creds = {k: s3_server[k] for k in ("access_key_id", "secret_access_key", "region")}

    def run(endpoint, name):
        cfg = tmp_path / f"{name}.yaml"
        cfg.write_text(yaml.safe_dump({"s3": {**creds, "endpoint_url": endpoint},
                                       "mixture": {"include": ["1"]}}))
        assert main(["--config", str(cfg), "--input", "s3://faults/the-stack",
                     "--output", f"s3://faults/runs/{name}", "--phases", "1,mix"]) == 0

    run(s3_server["endpoint_url"], "direct")
    with FaultyProxy(s3_server["endpoint_url"], every=7) as proxy:
        run(proxy.url, "proxied")
    assert proxy.faults["503"] >= 3 and proxy.faults["reset"] >= 3, proxy.faults
    fs = pafs.S3FileSystem(endpoint_override=s3_server["endpoint_url"].split("//")[1],
                           scheme="http", access_key=creds["access_key_id"],
                           secret_key=creds["secret_access_key"], region="us-east-1")
    assert outputs(fs, "faults/runs/proxied") == outputs(fs, "faults/runs/direct")
