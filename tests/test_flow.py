"""The flow end to end on a local Ray: local files and a real S3 server (moto, 127.0.0.1)."""

from __future__ import annotations

import json
import os

import pyarrow.dataset as pads
import pyarrow.fs as pafs
import pytest
import yaml

from flows.arctic import main
from flows.settings import SettingsError, load_settings
from corpus import PLANTED_SECRETS

pytestmark = pytest.mark.slow


def check_outcome(docs, ledger, expected):
    """Every input row is in exactly one place, with the expected fate."""
    doc_ids = [i for ids in docs.column("file_ids").to_pylist() for i in ids]
    led_ids = ledger.column("id").to_pylist()
    assert len(doc_ids) == len(set(doc_ids)), "a file is in two documents"
    assert len(led_ids) == len(set(led_ids)), "a row is removed twice"
    assert not set(doc_ids) & set(led_ids), "a row is both kept and removed"
    assert set(doc_ids) | set(led_ids) == set(expected), "rows appeared or vanished"
    reasons = dict(zip(led_ids, ledger.column("reason").to_pylist()))
    for rid, (state, reason) in expected.items():
        if state == "kept":
            assert rid in doc_ids, rid
        else:
            assert reasons.get(rid) == reason, (rid, reasons.get(rid), reason)


def test_settings_validation_names_the_setting(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("phase1:\n  basic_filters:\n    max_line_lenght: 10\n")
    with pytest.raises(SettingsError, match="phase1.basic_filters.max_line_lenght"):
        load_settings(bad)
    bad.write_text("phase1:\n  language:\n    languages: [Python, Klingon]\n")
    with pytest.raises(SettingsError, match="phase1.language: unknown language 'Klingon'"):
        load_settings(bad)
    bad.write_text("phase1:\n  languages: [Python]\n")
    with pytest.raises(SettingsError, match=r"phase1.languages'\]; known in phase1: "
                                            r"\['grouping'\] and the operators"):
        load_settings(bad)
    bad.write_text("read:\n  batch_rows: many\n")
    with pytest.raises(SettingsError, match="read.batch_rows: expected an integer"):
        load_settings(bad)
    with pytest.raises(SettingsError, match="phases"):
        load_settings(None, {"phases": ["7"]})
    with pytest.raises(SettingsError, match="ray.shuffle_strategy"):
        load_settings(None, {"ray": {"shuffle_strategy": "shuffle_by_hand"}})
    assert main(["--config", str(bad)]) == 2


def test_flow_local_end_to_end_and_resume(ray_local, stack_corpus, tmp_path, monkeypatch):
    root, expected = stack_corpus
    out = tmp_path / "out"
    assert main(["--input", str(root), "--output", str(out), "--phases", "1"]) == 0
    docs = pads.dataset(out / "phase1").to_table()
    ledger = pads.dataset(out / "removed").to_table()
    check_outcome(docs, ledger, expected)

    # the exact-duplicate group keeps the permissive, most-starred copy
    dups = ledger.filter(pads.field("reason") == "exact_duplicate").to_pylist()
    assert len(dups) == 2 and len({d["duplicate_of"] for d in dups}) == 1
    rep = dups[0]["duplicate_of"]
    assert any(rep in ids for ids in docs.column("file_ids").to_pylist())
    assert all(d["stage"] == "exact_dedup" for d in dups)
    assert {d["repo"] for d in dups} == {"copycat/vendored", "small/permissive"}

    # the edited fork of argparse is a near duplicate of the original
    (near,) = ledger.filter(pads.field("reason") == "near_duplicate").to_pylist()
    assert near["repo"] == "fork/argparse-edit" and near["stage"] == "near_dedup"
    original = [rid for rid, ids in zip(docs.column("repo").to_pylist(),
                                        docs.column("file_ids").to_pylist())
                if near["duplicate_of"] in ids]
    assert original and near["path"] == "argparse.py" and near["n_tokens"] > 1000

    # documents: language then repository, phase 1, headers
    rows = docs.to_pylist()
    assert {r["phase"] for r in rows} == {1}
    assert {(r["lang"], r["repo"]) for r in rows} >= {("JavaScript", "web/app"),
                                                    ("Go", "gopher/hello")}
    js = next(r for r in rows if r["repo"] == "web/app")
    assert js["text"].startswith("<repo_name>web/app\n<file_sep>src/")
    assert js["n_tokens"] > 0 and js["n_files"] == 2

    manifest = json.loads((out / "manifest.json").read_text())
    p1 = manifest["phase1"]
    assert p1["conservation"]["ok"]
    assert p1["input_rows"] == len(expected)
    stages = [s["stage"] for s in p1["funnel"]]
    assert stages == ["read", "content_checks", "language", "basic_filters", "code_filters",
                      "decontamination", "exact_dedup", "near_dedup", "grouping"]
    by = {s["stage"]: s for s in p1["funnel"]}
    assert by["read"]["removed_by_reason"]["malformed_json"]["rows"] == 1
    assert by["exact_dedup"]["rows_removed"] == 2
    assert by["exact_dedup"]["tokens_removed"] > 0
    assert by["near_dedup"]["rows_removed"] == 1
    info = manifest["stage_info"]["near_dedup"]
    assert (info["bands"], info["rows"]) == (25, 10) and info["rounds"] >= 1
    assert info["verify"] and 1 <= info["verified_edges"] <= info["candidate_edges"]
    assert by["grouping"]["rows_out"] == p1["files_in_documents"]
    assert p1["tokens"] == sum(r["n_tokens"] for r in rows)
    assert "s3cr3t" not in json.dumps(manifest)

    # contamination names the benchmark task; redaction keeps the file, not the values
    (cont,) = ledger.filter(pads.field("reason") == "contamination").to_pylist()
    assert cont["stage"] == "decontamination" and cont["detail"].startswith(
        "humaneval:HumanEval/0 ")
    deploy = next(r for r in rows if r["repo"] == "acme/deploy")["text"]
    for value in PLANTED_SECRETS:
        assert value not in deploy
    for placeholder in ("<KEY>", "<EMAIL>", "<IP_ADDRESS>", "<PASSWORD>"):
        assert placeholder in deploy
    assert "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855" in deploy
    assert "support@example.com" in deploy
    red = p1["redaction"]
    assert red["files_redacted"] >= 1 and red["by_kind"]["email"] >= 1
    assert red["by_kind"]["password"] == 1 and red["by_kind"]["ip_address"] == 1
    # tokens: the funnel starts with every counted token and ends at the documents'
    assert by["basic_filters"]["tokens_in"] == (
        by["near_dedup"]["tokens_out"] + sum(by[s]["tokens_removed"] for s in (
            "basic_filters", "code_filters", "decontamination", "exact_dedup", "near_dedup")))
    assert by["grouping"]["tokens_in"] == by["near_dedup"]["tokens_out"]

    # --resume: every stage is skipped and the output is unchanged
    assert main(["--input", str(root), "--output", str(out), "--resume", "--phases", "1"]) == 0
    m2 = json.loads((out / "manifest.json").read_text())
    assert m2["resumed_stages"] == ["ingest", "exact_dedup", "near_dedup", "grouping"]
    docs2 = pads.dataset(out / "phase1").to_table()
    assert sorted(docs2.column("doc_id").to_pylist()) == sorted(docs.column("doc_id").to_pylist())
    assert m2["phase1"]["conservation"] == p1["conservation"]
    # per-operator stats: every registered operator, in order, after the reader; the
    # removals of each match the funnel's by reason
    ops = p1["operators"]
    ran = [n for n, op in load_settings().phase1.operators.items() if op.enabled]
    assert "syntax" not in ran and "lint" not in ran  # off by default, as in the paper
    assert [op["name"] for op in ops] == ["read"] + ran
    assert all(op["seconds"] >= 0 and op["rows_in"] >= op["rows_out"] for op in ops)
    assert ops[0]["rows_in"] == p1["input_rows"]
    code = sum(op["rows_removed"] for op in ops if op["name"] in (
        "xml_header", "autogenerated", "minified", "html_text", "data_heavy", "comment_ratio",
        "fertility"))
    assert code == by["code_filters"]["rows_removed"]

    # --resume under other code (a changed operator or default): nothing is skipped
    import flows.settings

    monkeypatch.setattr(flows.settings, "code_fingerprint", lambda: "other code")
    assert main(["--input", str(root), "--output", str(out), "--resume", "--phases", "1"]) == 0
    m3 = json.loads((out / "manifest.json").read_text())
    assert m3["resumed_stages"] == [] and m3["code_fingerprint"] == "other code"
    assert m3["phase1"]["conservation"] == p1["conservation"]


def s3_client(server):
    import boto3

    return boto3.client("s3", endpoint_url=server["endpoint_url"],
                        aws_access_key_id=server["access_key_id"],
                        aws_secret_access_key=server["secret_access_key"],
                        region_name="us-east-1")


def upload_dir(s3, bucket, prefix, local_root):
    for dirpath, _, names in os.walk(local_root):
        for name in names:
            full = os.path.join(dirpath, name)
            key = f"{prefix}/{os.path.relpath(full, local_root)}"
            s3.upload_file(full, bucket, key)


def test_flow_reads_and_writes_s3(ray_local, s3_server, stack_corpus, tmp_path, capfd):
    root, expected = stack_corpus
    client = s3_client(s3_server)
    client.create_bucket(Bucket="corpus")
    upload_dir(client, "corpus", "the-stack", str(root))
    cfg = tmp_path / "s3.yaml"
    cfg.write_text(yaml.safe_dump({
        "s3": {k: s3_server[k] for k in ("endpoint_url", "access_key_id",
                                         "secret_access_key", "region")},
        "mixture": {"include": ["1"]}}))
    assert main(["--config", str(cfg), "--input", "s3://corpus/the-stack",
                 "--output", "s3://corpus/runs/r1", "--phases", "1,mix"]) == 0

    fs = pafs.S3FileSystem(endpoint_override=s3_server["endpoint_url"].split("//")[1],
                           scheme="http", access_key=s3_server["access_key_id"],
                           secret_key=s3_server["secret_access_key"],
                           region="us-east-1")
    docs = pads.dataset("corpus/runs/r1/phase1", filesystem=fs).to_table()
    ledger = pads.dataset("corpus/runs/r1/removed", filesystem=fs).to_table()
    check_outcome(docs, ledger, expected)
    with fs.open_input_stream("corpus/runs/r1/manifest.json") as f:
        text = f.read().decode()
    manifest = json.loads(text)
    assert manifest["phase1"]["conservation"]["ok"]
    assert manifest["input"] == "s3://corpus/the-stack"
    # the mixture's shards are on S3 and verify there
    from flows.verify import verify

    problems, summary = verify(fs, "corpus/runs/r1")
    assert problems == [] and summary["shards"] >= 1
    assert summary["tokens"] == manifest["mixture"]["phases"]["1"]["tokens"] > 0
    # the driver's log file went up with the output
    with fs.open_input_stream("corpus/runs/r1/logs/arctic.log") as f:
        assert "Starting execution of Dataset" in f.read().decode()
    # credentials never reach the manifest, the report or the log
    for name in ("manifest.json", "report.html", "report.md", "logs/arctic.log"):
        with fs.open_input_stream(f"corpus/runs/r1/{name}") as f:
            text = f.read().decode()
        assert s3_server["secret_access_key"] not in text, name
        assert s3_server["access_key_id"] not in text, name
    logs = capfd.readouterr()
    assert "corpus/runs/r1" in logs.err  # the driver's log is here, and has no credentials
    for secret in (s3_server["secret_access_key"], s3_server["access_key_id"]):
        assert secret not in logs.out and secret not in logs.err


def test_s3_credentials_and_endpoint_from_the_environment(s3_server, stack_corpus,
                                                          monkeypatch):
    """No config: credentials and endpoint come from the usual AWS variables."""
    from operators.io import INPUT_SUFFIXES, FileReader
    from operators.storage import S3Settings, list_files, resolve

    root, _ = stack_corpus
    client = s3_client(s3_server)
    client.create_bucket(Bucket="envbucket")
    client.upload_file(str(root / "data/javascript/train-00000-of-00001.parquet"),
                       "envbucket", "stack/data/javascript/a.parquet")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", s3_server["access_key_id"])
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", s3_server["secret_access_key"])
    monkeypatch.setenv("AWS_ENDPOINT_URL", s3_server["endpoint_url"])
    monkeypatch.setenv("AWS_REGION", "us-east-1")
    fs, path = resolve("s3://envbucket/stack", S3Settings())
    files = list_files(fs, path, INPUT_SUFFIXES)
    assert files == ["envbucket/stack/data/javascript/a.parquet"]
    (table,) = list(FileReader(path, fs).read_file(files[0]))
    assert table.num_rows == 3 and set(table.column("lang").to_pylist()) == {"JavaScript"}
    assert S3Settings(access_key_id="AKIAX", secret_access_key="zz").public()[
        "credentials"] == "from config"
    assert "zz" not in repr(S3Settings(access_key_id="AKIAX", secret_access_key="zz"))


def test_flow_without_candidate_verification(ray_local, stack_corpus, tmp_path):
    """The shipped configs verify candidate pairs; the plain LSH path works too."""
    root, expected = stack_corpus
    cfg = tmp_path / "noverify.yaml"
    cfg.write_text("phase1:\n  near_dedup:\n    verify: false\n")
    out = tmp_path / "out"
    assert main(["--config", str(cfg), "--input", str(root), "--output", str(out),
                 "--phases", "1"]) == 0
    check_outcome(pads.dataset(out / "phase1").to_table(),
                  pads.dataset(out / "removed").to_table(), expected)
    info = json.loads((out / "manifest.json").read_text())["stage_info"]["near_dedup"]
    assert not info["verify"] and "verified_edges" not in info
