"""Tokenized mixture shards: what Megatron and nanotron read, written next to the Parquet.

Each Parquet shard of a mixture phase gets, per format, one tokenized file (or several of at
most ``max_file_tokens``) holding its documents in the shard's own row order, each
document's token ids followed by the end-of-document token:

- ``megatron``: Megatron-LM's indexed dataset, ``PREFIX.bin`` (the ids, back to back) and
  ``PREFIX.idx`` (the ``MMIDIDX`` header, version 1, the dtype code, the sequence and
  document counts, then every sequence's length as int32, its byte offset as int64 and the
  document indices as int64). One sequence per document. Ids are uint16 for vocabularies
  under 65,500 and int32 above, Megatron's own rule (``DType.optimal_dtype``).
- ``datatrove``: DataTrove's token files, which nanotron's ``DatatroveFolderDataset``
  reads: ``NAME.ds`` (the ids, little-endian uint16, or uint32 past 65,536 ids),
  ``NAME.ds.index`` (every document's end, in tokens, as uint64) and ``NAME.ds.metadata``
  (``tokenizer|token size``, the token count, the count in short form).

A worker encodes ``batch_docs`` documents at a time and streams each file out, keeping only
the per-document lengths (12 bytes a document) until the index is written, so a shard's ids
are never held whole. Files are named after their Parquet shard:
``mixture/tokenized/<format>/<phase dir>/part-SSSSS-of-NNNNN[-KKK]``.
"""

from __future__ import annotations

import dataclasses
import json
import os
import struct

import numpy as np
import pyarrow as pa

from operators import storage

FORMATS = ("megatron", "datatrove")
#: Megatron's ``DType`` codes
_MEGATRON_CODES = {np.uint8: 1, np.int8: 2, np.int16: 3, np.int32: 4, np.int64: 5,
                   np.float64: 6, np.float32: 7, np.uint16: 8}
MEGATRON_HEADER = b"MMIDIDX\x00\x00"


@dataclasses.dataclass
class TokenizedSettings:
    """``mixture.tokenized``: token files written beside the Parquet shards."""

    #: formats to write: megatron (.bin/.idx), datatrove (.ds/.ds.index/.ds.metadata, what
    #: nanotron reads); empty writes none
    formats: list[str] = dataclasses.field(default_factory=list)
    #: the tokenizer (a spec as ``tokenizer`` takes); None: the run's ``tokenizer``
    tokenizer: str | None = None
    #: the token appended after every document; None: the tokenizer's ``eos_token``
    #: (``tokenizer_config.json``: what Megatron's ``--append-eod`` appends and its
    #: GPTDataset takes for ``eod``), else ``<|endoftext|>``
    eod_token: str | None = None
    #: most tokens in one file; a shard with more is split (0: one file per shard)
    max_file_tokens: int = 0
    #: documents encoded at a time (a worker holds one such batch of ids)
    batch_docs: int = 256

    def __post_init__(self):
        bad = [f for f in self.formats if f not in FORMATS]
        if bad:
            raise ValueError(f"formats: unknown {bad}; choose from {list(FORMATS)}")
        if len(set(self.formats)) != len(self.formats):
            raise ValueError(f"formats: {self.formats} names a format twice")
        if self.max_file_tokens < 0:
            raise ValueError("max_file_tokens must be >= 0")
        if self.batch_docs < 1:
            raise ValueError("batch_docs must be >= 1")


@dataclasses.dataclass(frozen=True)
class Vocabulary:
    """What every worker needs to know of the tokenizer, resolved once on the driver."""

    spec: str
    eod_token: str
    eod_id: int
    size: int

    def dtype(self, fmt: str):
        if fmt == "megatron":
            return np.uint16 if self.size < 65500 else np.int32
        return np.uint16 if self.size <= 1 << 16 else np.uint32

    def public(self) -> dict:
        return {"tokenizer": self.spec, "eod_token": self.eod_token, "eod_id": self.eod_id,
                "vocab_size": self.size,
                "dtype": {f: np.dtype(self.dtype(f)).name for f in FORMATS}}


def vocabulary(spec: str, eod_token: str | None, s3=None) -> Vocabulary:
    """The tokenizer's size and end-of-document id; a clear error when the token is not in
    the vocabulary or none can be chosen."""
    from operators.tokens import load_tokenizer, tokenizer_dir

    tok = load_tokenizer(spec)
    if eod_token is None:
        eod_token = _config_eos(tokenizer_dir(spec, s3))
        if eod_token is None and tok.token_to_id("<|endoftext|>") is not None:
            eod_token = "<|endoftext|>"
        if eod_token is None:
            raise ValueError(f"tokenizer {spec!r} declares no eos_token and has no "
                             "<|endoftext|>: set mixture.tokenized.eod_token")
    eod_id = tok.token_to_id(eod_token)
    if eod_id is None:
        raise ValueError(f"eod_token {eod_token!r} is not a token of {spec!r}")
    return Vocabulary(spec, eod_token, int(eod_id), int(tok.get_vocab_size(True)))


def _config_eos(where: str) -> str | None:
    """The ``eos_token`` a tokenizer's config declares (a local folder's
    ``tokenizer_config.json``; a hub name through ``AutoTokenizer``)."""
    if not os.path.isdir(where):
        from transformers import AutoTokenizer

        return AutoTokenizer.from_pretrained(where).eos_token
    path = os.path.join(where, "tokenizer_config.json")
    if not os.path.isfile(path):
        return None
    with open(path) as f:
        eos = json.load(f).get("eos_token")
    return eos.get("content") if isinstance(eos, dict) else eos


def encode(texts: list[str], vocab: Vocabulary) -> tuple[np.ndarray, np.ndarray]:
    """(ids of the documents back to back, each followed by the end-of-document id; each
    document's length with it), int64."""
    from operators.tokens import load_tokenizer

    encs = load_tokenizer(vocab.spec).encode_batch_fast(texts, add_special_tokens=False)
    lengths = np.fromiter((len(e.ids) + 1 for e in encs), np.int64, len(encs))
    ids = np.empty(int(lengths.sum()), np.int64)
    ends = np.cumsum(lengths)
    start = 0
    for e, end in zip(encs, ends):
        ids[start:end - 1] = e.ids
        ids[end - 1] = vocab.eod_id
        start = end
    return ids, lengths


# -- writers ------------------------------------------------------------------------------

class _TokenFile:
    """One tokenized file of a format: ids streamed out, lengths kept for the index."""

    fmt = ""

    def __init__(self, fs, base: str, rel: str, vocab: Vocabulary):
        self.fs, self.base, self.rel, self.vocab = fs, base, rel, vocab
        self.dtype = vocab.dtype(self.fmt)
        self.lengths: list[np.ndarray] = []
        self.out = storage.StreamOut(fs, base + self.data_suffix)

    def add(self, ids: np.ndarray, lengths: np.ndarray) -> None:
        self.out.write(ids.astype(self.dtype).tobytes())
        self.lengths.append(lengths)

    def close(self) -> dict:
        lengths = (np.concatenate(self.lengths) if self.lengths else np.zeros(0, np.int64))
        parts = {self.data_suffix: self.out.close()}
        for suffix, data in self.index(lengths).items():
            out = storage.StreamOut(self.fs, self.base + suffix)
            out.write(data)
            parts[suffix] = out.close()
        return {"name": self.rel, "documents": int(lengths.size),
                "tokens": int(lengths.sum()), "files": parts}

    def abort(self) -> None:
        self.out.abort()


class MegatronFile(_TokenFile):
    fmt = "megatron"
    data_suffix = ".bin"

    def index(self, lengths: np.ndarray) -> dict[str, bytes]:
        n = lengths.size
        item = np.dtype(self.dtype).itemsize
        pointers = np.zeros(n, np.int64)
        if n:
            np.cumsum(lengths[:-1] * item, out=pointers[1:])
        head = (MEGATRON_HEADER + struct.pack("<Q", 1)
                + struct.pack("<B", _MEGATRON_CODES[self.dtype])
                + struct.pack("<Q", n) + struct.pack("<Q", n + 1))
        return {".idx": b"".join([head, lengths.astype("<i4").tobytes(),
                                  pointers.astype("<i8").tobytes(),
                                  np.arange(n + 1, dtype="<i8").tobytes()])}


class DatatroveFile(_TokenFile):
    fmt = "datatrove"
    data_suffix = ".ds"

    def index(self, lengths: np.ndarray) -> dict[str, bytes]:
        tokens = int(lengths.sum())
        size = np.dtype(self.dtype).itemsize
        meta = f"{self.vocab.spec}|{size}\n{tokens}\n{_short(tokens)}"
        return {".ds.index": np.cumsum(lengths).astype("<u8").tobytes(),
                ".ds.metadata": meta.encode()}


WRITERS = {"megatron": MegatronFile, "datatrove": DatatroveFile}


def _short(n: int) -> str:
    for unit, scale in (("T", 1e12), ("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if n >= scale:
            return f"{n / scale:.1f} {unit}T"
    return f"{n} T"


def file_name(fmt: str, phase_dir: str, shard: int, n_shards: int, part: int | None) -> str:
    name = f"mixture/tokenized/{fmt}/{phase_dir}/part-{shard:05d}-of-{n_shards:05d}"
    return name if part is None else f"{name}-{part:03d}"


def write_shard(texts: pa.ChunkedArray | pa.Array, *, fs, root: str, phase_dir: str,
                shard: int, n_shards: int, settings: TokenizedSettings,
                vocab: Vocabulary) -> dict:
    """The tokenized files of one Parquet shard (``texts`` in its row order): per format,
    the list of files written with their documents, tokens, bytes and sha256."""
    cap = settings.max_file_tokens
    files: dict[str, list] = {f: [] for f in settings.formats}
    open_: dict[str, _TokenFile] = {}
    part = [0]
    used = [0]

    def start():
        p = part[0] if cap else None
        for fmt in settings.formats:
            rel = file_name(fmt, phase_dir, shard, n_shards, p)
            open_[fmt] = WRITERS[fmt](fs, f"{root}/{rel}", rel, vocab)
        part[0] += 1
        used[0] = 0

    def finish():
        for fmt, w in open_.items():
            files[fmt].append(w.close())
        open_.clear()

    n = len(texts)
    try:
        start()
        for lo in range(0, n, settings.batch_docs):
            chunk = texts.slice(lo, settings.batch_docs).to_pylist()
            ids, lengths = encode([t or "" for t in chunk], vocab)
            ends = np.cumsum(lengths)
            a = 0  # documents of this batch already written
            while a < lengths.size:
                b = lengths.size
                if cap:
                    before = int(ends[a - 1]) if a else 0
                    room = cap - used[0]
                    b = int(np.searchsorted(ends, before + room, side="right"))
                    if b <= a:  # the next document does not fit: a new file, unless empty
                        if used[0]:
                            finish()
                            start()
                            continue
                        b = a + 1  # one document longer than a file: alone in its file
                lo_tok = int(ends[a - 1]) if a else 0
                hi_tok = int(ends[b - 1])
                for w in open_.values():
                    w.add(ids[lo_tok:hi_tok], lengths[a:b])
                used[0] += hi_tok - lo_tok
                a = b
        finish()
    except BaseException:
        for w in open_.values():
            w.abort()
        raise
    return files


# -- readers (verify) -----------------------------------------------------------------------

def read_megatron_index(data: bytes) -> tuple[np.dtype, np.ndarray, np.ndarray, np.ndarray]:
    """(dtype, lengths, pointers, document indices) of a ``.idx`` file; ValueError when it
    is not one."""
    if data[:9] != MEGATRON_HEADER:
        raise ValueError("not a Megatron index (header)")
    version, = struct.unpack("<Q", data[9:17])
    if version != 1:
        raise ValueError(f"index version {version}, expected 1")
    code = data[17]
    dtype = {v: k for k, v in _MEGATRON_CODES.items()}.get(code)
    if dtype is None:
        raise ValueError(f"unknown dtype code {code}")
    n, docs = struct.unpack("<QQ", data[18:34])
    at = 34
    lengths = np.frombuffer(data, "<i4", n, at)
    at += 4 * n
    pointers = np.frombuffer(data, "<i8", n, at)
    at += 8 * n
    doc_idx = np.frombuffer(data, "<i8", docs, at)
    at += 8 * docs
    if at != len(data):
        raise ValueError(f"index has {len(data) - at} unexpected trailing bytes")
    return np.dtype(dtype), lengths, pointers, doc_idx


def split_documents(ids: np.ndarray, lengths: np.ndarray) -> list[np.ndarray]:
    return np.split(ids, np.cumsum(lengths)[:-1]) if lengths.size else []
