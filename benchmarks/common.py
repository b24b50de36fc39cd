"""What the benchmarks share: the multi-version corpus, its scaled copies, and a sampler of
peak memory per worker process.

Corpus: source distributions of real packages at several versions (natural near
duplicates), unpacked into The Stack v1 layout, one repository per package version.
Scaled corpus ×k: k copies of it, copy c>0 with every ASCII letter passed through a
seeded permutation (the same within a copy), so each copy keeps the near-duplicate
structure of the original, file sizes and token shapes, but shares no shingles with the
other copies: k× the data and k× the work, not k× one cluster.
"""

from __future__ import annotations

import builtins
import collections
import keyword
import os
import random
import re
import string
import subprocess
import sys
import tarfile
import threading
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from operators.languages import language_from_path, stack_slug  # noqa: E402
from operators.sample_corpus import git_blob_sha  # noqa: E402
from operators.tokens import CACHE_DIR  # noqa: E402

SDISTS = ["requests==2.25.1", "requests==2.28.2", "requests==2.31.0", "requests==2.32.3",
          "urllib3==1.26.18", "urllib3==2.0.7", "urllib3==2.2.3", "click==7.1.2",
          "click==8.0.4", "click==8.1.7", "flask==2.0.3", "flask==2.3.3", "flask==3.0.3",
          "attrs==22.2.0", "attrs==23.2.0", "six==1.15.0", "six==1.16.0", "jinja2==3.0.3",
          "jinja2==3.1.4"]
SDIST_DIR = Path(CACHE_DIR) / "bench-sdists"
CORPUS_DIR = Path(CACHE_DIR) / "bench-corpus-versions"


def download(sdist_dir: Path = SDIST_DIR) -> list[Path]:
    sdist_dir.mkdir(parents=True, exist_ok=True)
    for spec in SDISTS:
        name, version = spec.split("==")
        if any(sdist_dir.glob(f"{name}-{version}.*")) or any(
                sdist_dir.glob(f"{name.capitalize()}-{version}.*")):
            continue
        subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--no-deps",
                        "--no-binary", ":all:", spec, "-d", str(sdist_dir)], check=True)
    return sorted(p for p in sdist_dir.iterdir() if p.name.endswith((".tar.gz", ".zip")))


def build_corpus(sdists: list[Path], out: Path = CORPUS_DIR) -> Path:
    if (out / "_SUCCESS").exists():
        return out
    rows = collections.defaultdict(list)
    for sd in sdists:
        repo = "pypi-versions/" + sd.name.rsplit(".tar.gz", 1)[0]
        with tarfile.open(sd) as tar:
            for m in tar.getmembers():
                if not m.isfile() or language_from_path(m.name) is None:
                    continue
                data = tar.extractfile(m).read()
                try:
                    text = data.decode("utf-8")
                except UnicodeDecodeError:
                    continue
                path = m.name.split("/", 1)[1] if "/" in m.name else m.name
                lang = language_from_path(path)
                rows[lang].append({"hexsha": git_blob_sha(data), "size": len(data),
                                   "ext": os.path.splitext(path)[1].lstrip("."), "lang": lang,
                                   "max_stars_repo_path": path, "max_stars_repo_name": repo,
                                   "max_stars_repo_licenses": ["MIT"], "max_stars_count": 0,
                                   "content": text})
    for lang, rs in rows.items():
        d = out / "data" / stack_slug(lang)
        d.mkdir(parents=True, exist_ok=True)
        pq.write_table(pa.Table.from_pylist(rs), d / "train-00000-of-00001.parquet")
    (out / "_SUCCESS").touch()
    return out


def base_corpus() -> Path:
    return build_corpus(download())


def _cipher(copy: int) -> dict[int, int]:
    if copy == 0:
        return {}
    rng = random.Random(copy)
    table = {}
    for alphabet in (string.ascii_lowercase, string.ascii_uppercase):
        shuffled = list(alphabet)
        rng.shuffle(shuffled)
        table.update(str.maketrans(alphabet, "".join(shuffled)))
    return table


#: words a renamed copy keeps: the keywords and common builtins of the corpus's languages
KEEP_WORDS = frozenset(keyword.kwlist + keyword.softkwlist + dir(builtins) + (
    "var let const function return if else for while do switch case break continue new "
    "this typeof instanceof delete void try catch finally throw class extends super import "
    "export default from async await yield null undefined true false int char long short "
    "unsigned signed float double struct union enum static extern sizeof typedef include "
    "define ifdef ifndef endif goto volatile register auto").split())
IDENTIFIER = re.compile(r"\b[A-Za-z_][A-Za-z0-9_]*\b")


def _renamer(base: Path, copy: int):
    """A function that renames every identifier of a text that is not a keyword or builtin
    to another identifier of the corpus (a seeded permutation of its identifier vocabulary
    per copy): the copy is still code with real-looking names (its token fertility, comment
    shapes and line lengths stay those of code), but its 5-gram shingles differ from the
    original's wherever an identifier stands."""
    vocab = set()
    for f in sorted(base.glob("data/*/*.parquet")):
        for text in pq.read_table(f, columns=["content"]).column("content").to_pylist():
            vocab.update(IDENTIFIER.findall(text))
    words = sorted(vocab - KEEP_WORDS)
    shuffled = list(words)
    random.Random(copy).shuffle(shuffled)
    mapping = dict(zip(words, shuffled))
    return lambda text: IDENTIFIER.sub(lambda m: mapping.get(m.group(0), m.group(0)), text)


def scaled_corpus(base: Path, k: int, mode: str = "letters") -> Path:
    """``k`` copies of ``base``, one Parquet file per copy and language: letters permuted
    (``letters``: the text stops looking like code to the code filters, fine for a dedup
    stage alone) or identifiers renamed (``identifiers``: still code, for whole pipelines)."""
    if k == 1:
        return base
    out = base.parent / (f"{base.name}-x{k}" if mode == "letters" else
                         f"{base.name}-{mode}-x{k}")
    if (out / "_SUCCESS").exists():
        return out
    renamers: dict = {}
    for f in sorted(base.glob("data/*/*.parquet")):
        t = pq.read_table(f)
        for c in range(k):
            if mode == "letters":
                table = _cipher(c)
                content = [s.translate(table) for s in t.column("content").to_pylist()]
            else:
                rename = renamers.setdefault(c, _renamer(base, c) if c else (lambda x: x))
                content = [rename(s) for s in t.column("content").to_pylist()]
            data = [s.encode() for s in content]
            copy = t.set_column(t.schema.get_field_index("content"), "content",
                                pa.array(content, pa.string()))
            copy = copy.set_column(copy.schema.get_field_index("size"), "size",
                                   pa.array([len(d) for d in data], t.schema.field("size").type))
            copy = copy.set_column(copy.schema.get_field_index("hexsha"), "hexsha",
                                   pa.array([git_blob_sha(d) for d in data]))
            repos = [f"{r}-copy{c}" for r in t.column("max_stars_repo_name").to_pylist()]
            copy = copy.set_column(copy.schema.get_field_index("max_stars_repo_name"),
                                   "max_stars_repo_name", pa.array(repos))
            d = out / f.parent.relative_to(base)
            d.mkdir(parents=True, exist_ok=True)
            pq.write_table(copy, d / f"train-{c:05d}-of-{k:05d}.parquet")
    (out / "_SUCCESS").touch()
    return out


def corpus_mb(corpus: Path) -> float:
    return sum(pq.read_table(f, columns=["size"]).column("size").to_numpy().sum()
               for f in corpus.glob("data/*/*.parquet")) / 1e6


# -- memory -----------------------------------------------------------------------------

def _memory_kb(pid: int) -> tuple[int, int]:
    """(heap, store) of a process: its private (unshared) resident pages, split into those
    of Ray's object store and the rest. A worker maps the store's shared-memory file and
    writes its output blocks there; until another process maps the same pages the kernel
    counts them as the writer's private pages, though they belong to the store, whose size
    is fixed (``object_store_memory``) and whose overflow shows as spilling."""
    kb, store, in_store = 0, 0, False
    try:
        with open(f"/proc/{pid}/smaps") as f:
            for line in f:
                if line.startswith(("Private_Clean:", "Private_Dirty:")):
                    if in_store:
                        store += int(line.split()[1])
                    else:
                        kb += int(line.split()[1])
                elif not line[0].isupper():  # a mapping's header: "start-end perms ... path"
                    fields = line.split()
                    in_store = len(fields) > 5 and os.path.basename(fields[5]).startswith(
                        "plasma")
    except (OSError, ValueError, IndexError):
        return 0, 0
    return kb, store


def _private_kb(pid: int) -> int:
    """The heap of a process (:func:`_memory_kb`)."""
    return _memory_kb(pid)[0]


def _hwm_kb(pid: int) -> int:
    """Peak resident set of a process as the kernel tracked it (VmHWM; includes the shared
    object-store pages it touched)."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        pass
    return 0


def _cmdline(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def _children(pid: int) -> list[int]:
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        try:
            with open(f"/proc/{p}/task/{p}/children") as f:
                kids = [int(x) for x in f.read().split()]
        except OSError:
            kids = []
        out += kids
        todo += kids
    return out


#: how the results files describe the memory columns
PEAK_MEMORY_NOTE = (
    "Peak worker MB, sampled every 0.2 s for each worker process (Ray worker or DataTrove "
    "process): heap = its private resident pages outside Ray's object store (the figure the "
    "memory goal is checked on); private = the same plus the object-store pages it alone "
    "maps (the blocks it wrote into the store's shared memory, which the store's fixed size "
    "bounds); RSS = the kernel's high-water mark, shared pages included.")


class Sampler:
    """A context manager that calls ``sample()`` every ``interval`` seconds on a thread of
    its own while the ``with`` block runs."""

    def __init__(self, interval: float):
        self.interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def sample(self) -> None:
        raise NotImplementedError

    def _loop(self):
        while not self._stop.is_set():
            self.sample()
            time.sleep(self.interval)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()


class PeakMemory(Sampler):
    """Samples the memory of this process's descendants that ``select`` accepts (by command
    line) every ``interval`` seconds. ``peak_mb``: the largest heap (:func:`_memory_kb`)
    any one of them reached; ``peak_private_mb``: the largest heap plus the object-store
    pages it alone maps; ``peak_total_mb``: the largest sum of heaps; ``peak_rss_mb``: the
    largest kernel high-water mark (VmHWM, shared pages included) of one of them, which no
    sampling interval can miss."""

    def __init__(self, select=lambda cmd: True, interval: float = 0.2):
        super().__init__(interval)
        self.select = select
        self.peak_kb = self.peak_private_kb = self.peak_total_kb = self.hwm_kb = 0
        #: the peak heap per label: set ``label`` (a stage name) while running; task
        #: workers (``label_peak_kb``) apart from Ray's spill/restore I/O workers
        #: (``label_io_peak_kb``), which exist only once the object store spills
        self.label: str | None = None
        self.label_peak_kb: dict[str, int] = {}
        self.label_io_peak_kb: dict[str, int] = {}

    def sample(self) -> None:
        cmds = {p: _cmdline(p) for p in _children(os.getpid())}
        pids = [p for p, c in cmds.items() if self.select(c)]
        sizes = [_memory_kb(p) for p in pids]
        self.hwm_kb = max([self.hwm_kb] + [_hwm_kb(p) for p in pids])
        if not sizes:
            return
        self.peak_kb = max([self.peak_kb] + [h for h, _ in sizes])
        if self.label:
            for io, peaks in ((False, self.label_peak_kb), (True, self.label_io_peak_kb)):
                got = [h for p, (h, _) in zip(pids, sizes) if _io_worker(cmds[p]) == io]
                if got:
                    peaks[self.label] = max([peaks.get(self.label, 0)] + got)
        self.peak_private_kb = max([self.peak_private_kb] + [h + s for h, s in sizes])
        self.peak_total_kb = max(self.peak_total_kb, sum(h for h, _ in sizes))

    @property
    def peak_mb(self) -> float:
        return round(self.peak_kb / 1024, 1)

    @property
    def peak_private_mb(self) -> float:
        return round(self.peak_private_kb / 1024, 1)

    @property
    def peak_rss_mb(self) -> float:
        return round(self.hwm_kb / 1024, 1)

    @property
    def peak_total_mb(self) -> float:
        return round(self.peak_total_kb / 1024, 1)


def _io_worker(cmd: str) -> bool:
    """Ray's spill/restore I/O worker processes (``ray::SPILL_SpillWorker`` etc.)."""
    return cmd.startswith("ray::") and ("SpillWorker" in cmd or "RestoreWorker" in cmd)


def ray_worker(cmd: str) -> bool:
    """Ray task/actor worker processes (not the raylet, GCS or the driver)."""
    return "default_worker.py" in cmd or cmd.startswith("ray::")


def spilled_mb() -> float:
    """Object-store bytes spilled to disk so far in the connected Ray cluster."""
    import re

    from ray._private.internal_api import memory_summary

    text = memory_summary(stats_only=True)
    m = re.search(r"Spilled (\d+) MiB", text)
    return float(m.group(1)) if m else 0.0
