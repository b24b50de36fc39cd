"""Tokenized mixture shards, read back by the libraries trainers use: megatron-core's
``IndexedDataset`` and ``GPTDataset`` (Megatron-LM), DataTrove's ``DatatroveFileDataset``
and ``DatatroveFolderDataset`` (what nanotron reads). Every document's ids are compared
with its text encoded by the tokenizer directly (the ``tokenizers`` library, not the
flow's own encoder), both dtypes are exercised (a 49k vocabulary: uint16; a locally built
70k one: int32/uint32), and a tiny decoder trains on a shard through Megatron's loader."""

from __future__ import annotations

import glob
import json
import math
import os
import shutil
import subprocess
import sys

import numpy as np
import pyarrow as pa
import pyarrow.fs as pafs
import pytest

from conftest import ROOT
from operators.tokenized import (TokenizedSettings, read_megatron_index, vocabulary,
                                 write_shard)
from operators.tokens import load_tokenizer, tokenizer_dir


def _texts(n=60):
    """Real source files: the standard library's, with an empty and a one-character text."""
    import tokenize as tk_mod

    files = sorted(glob.glob(os.path.join(os.path.dirname(tk_mod.__file__), "*.py")))[:n]
    return [open(f, encoding="utf-8").read() for f in files] + ["", "x"]


def _expected(spec, eod_id, texts):
    tok = load_tokenizer(spec)
    return [np.array(tok.encode(t, add_special_tokens=False).ids + [eod_id]) for t in texts]


@pytest.fixture(scope="module")
def big_vocab(tmp_path_factory):
    """A word-level tokenizer of 70,000 ids (past uint16), built here with `tokenizers`
    and saved as Hugging Face saves one, eos_token declared in its config."""
    from tokenizers import Tokenizer, models, pre_tokenizers

    words = sorted({w for t in _texts() for w in t.split()})[:60000]
    vocab = {"[UNK]": 0, "</s>": 1, **{w: i + 2 for i, w in enumerate(words)}}
    for i in range(len(vocab), 70000):
        vocab[f"<filler{i}>"] = i
    tok = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    where = tmp_path_factory.mktemp("bigvocab")
    tok.save(str(where / "tokenizer.json"))
    (where / "tokenizer_config.json").write_text(json.dumps({"eos_token": "</s>"}))
    return str(where)


def _write(tmp_path, spec, cap, texts):
    vocab = vocabulary(spec, None)
    settings = TokenizedSettings(formats=["megatron", "datatrove"], max_file_tokens=cap,
                                 batch_docs=7)
    files = write_shard(pa.array(texts), fs=pafs.LocalFileSystem(), root=str(tmp_path),
                        phase_dir="phase2", shard=3, n_shards=4, settings=settings,
                        vocab=vocab)
    return vocab, files


@pytest.mark.parametrize("which,cap", [("smollm2", 0), ("smollm2", 5000), ("big", 0),
                                       ("big", 3000)])
def test_real_readers_return_every_document(tmp_path, big_vocab, which, cap):
    from datatrove.utils.dataset import DatatroveFileDataset, DatatroveFolderDataset
    from megatron.core.datasets.indexed_dataset import IndexedDataset

    spec = "packaged:smollm2" if which == "smollm2" else big_vocab
    texts = _texts()
    vocab, files = _write(tmp_path, spec, cap, texts)
    if which == "smollm2":  # SmolLM2's declared eos; 49,152 ids fit in uint16
        assert (vocab.eod_token, vocab.size) == ("<|im_end|>", 49152)
        dtypes = (np.uint16, 2)
    else:
        assert (vocab.eod_token, vocab.eod_id, vocab.size) == ("</s>", 1, 70000)
        dtypes = (np.int32, 4)
    expected = _expected(spec, vocab.eod_id, texts)
    assert [len(files[f]) > 1 for f in ("megatron", "datatrove")] == [bool(cap)] * 2
    if cap:  # no file past the cap unless one document alone is longer
        for f in files["megatron"]:
            assert f["tokens"] <= cap or f["documents"] == 1

    got = []
    for f in files["megatron"]:
        ds = IndexedDataset(str(tmp_path / f["name"]))
        assert ds.index.dtype == dtypes[0] and len(ds) == f["documents"]
        got += [np.array(ds[i]) for i in range(len(ds))]  # copies: the mmap closes with ds
    assert len(got) == len(expected)
    assert all(np.array_equal(a, b) for a, b in zip(got, expected))

    got = []
    for f in files["datatrove"]:  # one window of the whole file, documents by their index
        n = f["tokens"]
        ds = DatatroveFileDataset(str(tmp_path / f"{f['name']}.ds"), seq_len=n - 1,
                                  token_size=dtypes[1], return_positions=True)
        item = ds[0]
        ids, pos = item["input_ids"].numpy(), item["positions"].numpy()
        starts = [*np.flatnonzero(pos == 0), n]
        got += [ids[a:b] for a, b in zip(starts[:-1], starts[1:])]
    assert len(got) == len(expected)
    assert all(np.array_equal(a, b) for a, b in zip(got, expected))
    # the folder reader nanotron uses: windows of 16 tokens over every file in order
    folder = DatatroveFolderDataset(str(tmp_path / "mixture/tokenized/datatrove/phase2"),
                                    seq_len=15, filename_pattern="*.ds",
                                    token_size=dtypes[1])
    assert len(folder) == sum(f["tokens"] // 16 for f in files["datatrove"])
    stream = np.concatenate(expected)
    first = files["datatrove"][0]["tokens"] // 16
    window = np.concatenate([folder[i]["input_ids"].numpy() for i in range(first)])
    assert np.array_equal(window, stream[:len(window)])


def test_index_layout_and_settings(tmp_path):
    _, files = _write(tmp_path, "packaged:smollm2", 0, ["a b", "", "def f(): pass\n"])
    f = files["megatron"][0]
    data = (tmp_path / f"{f['name']}.idx").read_bytes()
    dtype, lengths, pointers, docs = read_megatron_index(data)
    assert dtype == np.uint16 and list(docs) == [0, 1, 2, 3]
    assert list(pointers) == [0, 2 * lengths[0], 2 * (lengths[0] + lengths[1])]
    assert lengths[1] == 1  # an empty document is its end-of-document token alone
    meta = (tmp_path / f"{files['datatrove'][0]['name']}.ds.metadata").read_text().split("\n")
    assert meta[:2] == ["packaged:smollm2|2", str(f["tokens"])]
    with pytest.raises(ValueError, match="not a Megatron index"):
        read_megatron_index(b"x" * 40)
    with pytest.raises(ValueError, match="unknown"):
        TokenizedSettings(formats=["mds"])
    with pytest.raises(ValueError, match="not a token"):
        vocabulary("packaged:smollm2", "<|no such token|>")
    with pytest.raises(ValueError, match="eod_token"):
        vocabulary("packaged:minilm", None)  # BERT's vocabulary has no end of document


# -- the embedded run's token files --------------------------------------------------------

def _run_files(out, manifest, fmt):
    for p, v in manifest["mixture"]["phases"].items():
        for s in v["shards"]:
            yield p, s, s["tokenized"][fmt]


@pytest.mark.slow
def test_embedded_token_files_match_the_parquet(embedded_run, tmp_path):
    from datatrove.utils.dataset import DatatroveFileDataset
    from megatron.core.datasets.indexed_dataset import IndexedDataset
    import pyarrow.parquet as pq

    out, _, _ = embedded_run
    manifest = json.loads((out / "manifest.json").read_text())
    info = manifest["mixture"]["tokenized"]
    assert info["formats"] == ["megatron", "datatrove"] and info["counts_n_tokens"]
    spec = manifest["config"]["tokenizer"]
    docs = 0
    for p, shard, files in _run_files(out, manifest, "megatron"):
        texts = pq.read_table(out / shard["path"], columns=["text"]).column("text").to_pylist()
        expected = _expected(spec, info["eod_id"], texts)
        got = []
        for f in files:
            ds = IndexedDataset(str(out / f["name"]))
            got += [np.array(ds[i]) for i in range(len(ds))]
        assert len(got) == len(expected) == shard["rows"]
        assert all(np.array_equal(a, b) for a, b in zip(got, expected)), shard["path"]
        # the manifest's promise: its n_tokens, one end-of-document token more per document
        assert sum(len(d) for d in got) == shard["tokens"] + shard["rows"]
        dt = []
        for f in shard["tokenized"]["datatrove"]:
            item = DatatroveFileDataset(str(out / f"{f['name']}.ds"), seq_len=f["tokens"] - 1,
                                        return_positions=True)[0]
            ids, pos = item["input_ids"].numpy(), item["positions"].numpy()
            starts = [*np.flatnonzero(pos == 0), len(ids)]
            dt += [ids[a:b] for a, b in zip(starts[:-1], starts[1:])]
        assert all(np.array_equal(a, b) for a, b in zip(dt, expected)) and len(dt) == len(got)
        docs += len(got)
    assert docs == manifest["mixture"]["rows"]
    for p, v in manifest["mixture"]["phases"].items():
        assert v["tokenized"]["megatron"]["content_tokens"] == v["tokens"]
        weights = v["sampling"]["megatron_data_path"][0::2]
        assert abs(sum(weights) - 1) < 1e-6
        assert v["sampling"]["datatrove_folder"].endswith(f"/tokenized/datatrove/phase{p}")

    verify = [sys.executable, "flows/verify.py"]
    res = subprocess.run(verify + [str(out), "--retokenize"], cwd=ROOT, capture_output=True,
                         text=True, timeout=300)
    assert res.returncode == 0, res.stdout + res.stderr[-2000:]
    # a changed id, a lost index, an unlisted file: each is caught
    bad = tmp_path / "bad"
    shutil.copytree(out, bad, ignore=lambda d, names: {"_work", "phase1", "phase2", "phase3",
                                                         "removed"} & set(names)
                    if d == str(out) else [])
    f = manifest["mixture"]["phases"]["2"]["shards"][0]["tokenized"]["megatron"][0]
    raw = bytearray((bad / f"{f['name']}.bin").read_bytes())
    raw[10] ^= 1
    (bad / f"{f['name']}.bin").write_bytes(bytes(raw))
    g = manifest["mixture"]["phases"]["1"]["shards"][0]["tokenized"]["datatrove"][0]
    (bad / f"{g['name']}.ds.index").unlink()
    (bad / "mixture/tokenized/megatron/phase1/extra.idx").write_bytes(b"MMIDIDX")
    res = subprocess.run(verify + [str(bad), "--retokenize"], cwd=ROOT, capture_output=True,
                         text=True, timeout=300)
    assert res.returncode == 1, res.stdout
    assert f"{f['name']}.bin: sha256" in res.stdout
    assert "megatron tokens differ from the text encoded again in 1 document" in res.stdout
    assert f"{g['name']}.ds.index: cannot be read" in res.stdout
    assert "extra.idx: in the mixture but not in the manifest" in res.stdout


@pytest.mark.slow
def test_cooldown_phase_and_schedule(embedded_run, tmp_path):
    """`--phases mix` again with a cooldown phase: its shards carry phase 4, it comes last
    in the schedule, and its token files verify."""
    import yaml

    out, sample, _ = embedded_run
    run = tmp_path / "out"
    shutil.copytree(out, run, ignore=shutil.ignore_patterns("mixture"))
    cfg = yaml.safe_load((out.parent / "small.yaml").read_text())
    cfg["mixture"]["include"] = ["cooldown", "1", "2", "3"]
    cfg["mixture"]["cooldown"] = [  # whole repeats: the expected tokens are exact
        {"source": "synthetic", "input": "phase3", "repeats": 2.0},
        {"source": "high_quality", "input": "phase2", "first_epoch_only": True, "repeats": 1.0}]
    cfg["mixture"]["tokenized"]["max_file_tokens"] = 20000
    path = tmp_path / "cooldown.yaml"
    path.write_text(yaml.safe_dump(cfg))
    res = subprocess.run([sys.executable, "flows/arctic.py", "--config", str(path),
                          "--output", str(run), "--phases", "mix"], cwd=ROOT,
                         capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr[-3000:]
    assert "cooldown" in res.stdout and "token files: megatron" in res.stdout
    mix = json.loads((run / "manifest.json").read_text())["mixture"]
    assert [s["phase"] for s in mix["schedule"]] == ["1", "2", "3", "cooldown"]
    assert mix["schedule"][-1]["starts_at"] + mix["schedule"][-1]["fraction"] == \
        pytest.approx(1.0, abs=1e-5)
    cool = mix["phases"]["cooldown"]
    assert cool["sources"]["synthetic"]["tokens"] == \
        2 * mix["phases"]["3"]["sources"]["synthetic"]["tokens"]
    assert cool["sources"]["high_quality"]["tokens"] == mix["phases"]["2"]["epochs"]["1"]["tokens"]
    assert sum(cool["sampling"]["sources"].values()) == pytest.approx(1.0, abs=1e-5)
    import pyarrow.parquet as pq

    t = pq.read_table(run / cool["shards"][0]["path"], columns=["phase"])
    assert set(t.column("phase").to_pylist()) == {4}
    assert all(s["path"].startswith("mixture/cooldown/") for s in cool["shards"])
    assert any(len(s["tokenized"]["megatron"]) > 1 for p in mix["phases"].values()
               for s in p["shards"])  # 20,000-token files: the larger shards split
    res = subprocess.run([sys.executable, "flows/verify.py", str(run), "--retokenize"],
                         cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stdout + res.stderr[-2000:]


@pytest.mark.slow
def test_a_tiny_decoder_trains_on_a_shard_through_megatrons_loader(embedded_run, tmp_path):
    """Megatron's own GPT data path (BlendedMegatronDatasetBuilder → GPTDataset, with the
    run's tokenizer through megatron-core's tokenizer loader) feeds a decoder of ~400k
    parameters on the CPU; after 80 AdamW steps its loss on a held-out batch is lower."""
    import torch
    from megatron.core.datasets.blended_megatron_dataset_builder import (
        BlendedMegatronDatasetBuilder)
    from megatron.core.datasets.gpt_dataset import GPTDataset, GPTDatasetConfig
    from megatron.core.tokenizers import MegatronTokenizer

    out, _, _ = embedded_run
    manifest = json.loads((out / "manifest.json").read_text())
    info = manifest["mixture"]["tokenized"]
    phase = manifest["mixture"]["phases"]["1"]
    data_path = phase["sampling"]["megatron_data_path"]
    tok = MegatronTokenizer.from_pretrained(
        tokenizer_path=tokenizer_dir(manifest["config"]["tokenizer"]),
        metadata_path={"library": "huggingface", "model_type": "gpt"})
    assert (tok.eod, tok.vocab_size) == (info["eod_id"], info["vocab_size"])
    config = GPTDatasetConfig(
        random_seed=0, sequence_length=64, blend=(data_path[1::2], data_path[0::2]),
        split="90,10,0", tokenizer=tok, reset_position_ids=True, reset_attention_mask=False,
        eod_mask_loss=False, create_attention_mask=False, path_to_cache=str(tmp_path / "idx"))
    # a one-process group, as a Megatron job has (the blend's index cache asks for a rank)
    torch.distributed.init_process_group("gloo", rank=0, world_size=1,
                                         init_method=f"file://{tmp_path / 'pg'}")
    try:
        train, valid, _ = BlendedMegatronDatasetBuilder(GPTDataset, [640, 16, 0],
                                                        lambda: True, config).build()
    finally:
        torch.distributed.destroy_process_group()
    loader = torch.utils.data.DataLoader(train, batch_size=8, shuffle=False)
    held = next(iter(torch.utils.data.DataLoader(valid, batch_size=16)))

    torch.manual_seed(0)
    d, vocab = 8, info["vocab_size"]

    class Decoder(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.emb = torch.nn.Embedding(vocab, d)
            self.pos = torch.nn.Embedding(64, d)
            self.block = torch.nn.TransformerEncoderLayer(d, 2, 4 * d, dropout=0.0,
                                                          batch_first=True)

        def forward(self, tokens, positions):
            x = self.emb(tokens) + self.pos(positions)
            mask = torch.nn.Transformer.generate_square_subsequent_mask(tokens.shape[1])
            return self.block(x, src_mask=mask, is_causal=True) @ self.emb.weight.T

    model = Decoder()
    assert 300_000 < sum(p.numel() for p in model.parameters()) < 1_000_000

    def loss_of(batch):
        logits = model(batch["tokens"], batch["position_ids"])
        per = torch.nn.functional.cross_entropy(logits.flatten(0, 1),
                                                batch["labels"].flatten(), reduction="none")
        mask = batch["loss_mask"].flatten()
        return (per * mask).sum() / mask.sum()

    with torch.no_grad():
        before = loss_of(held).item()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    steps = 0
    for batch in loader:
        opt.zero_grad()
        loss_of(batch).backward()
        opt.step()
        steps += 1
    with torch.no_grad():
        after = loss_of(held).item()
    assert steps == 80
    # lower than before, and than a uniform guess over the vocabulary: it learnt the data
    assert after < min(before - 1.0, math.log(vocab) - 0.5), (before, after)
