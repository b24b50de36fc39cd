"""The run: Ray start-up, where input and output live, stage bookkeeping (timing, markers,
resume) and dataset reads/writes under the output root. Only this layer and the stage
modules name Ray."""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.fs as pafs
import pyarrow.parquet as pq
import ray
import ray.data
from ray.data.context import ShuffleStrategy

from flows.logs import set_stage
from flows.settings import Settings
from operators import storage

REPO_ROOT = Path(__file__).resolve().parents[1]

#: S3 errors worth a task retry, besides the ones Ray's I/O already retries
TRANSIENT_S3_ERRORS = ["AWS Error INTERNAL_FAILURE", "AWS Error NETWORK_CONNECTION",
                       "AWS Error SLOW_DOWN", "AWS Error SERVICE_UNAVAILABLE",
                       "Failed to flush response stream", "Connection reset"]


#: shuffle strategies whose state lives in actors that Ray does not restart on node loss
UNSAFE_SHUFFLES = ("hash_shuffle",)


#: Set in every worker process. Arrow allocates through mimalloc, which keeps freed pages
#: until a later allocation or free in the same thread gets round to purging them; a worker
#: that streams many files then holds far more than one task needs (a grouping reader grew
#: by 180 MB over 24 files at 16x the benchmark corpus). With no delay, mimalloc hands
#: freed pages back at once. Python objects go through glibc's malloc, whose threshold for
#: serving a large block from its own mapping rises as such blocks are freed (up to 32 MB),
#: after which they come from the heap and stay there; a fixed threshold (128 KB) and two
#: arenas keep a worker that runs thousands of tasks near one task's peak.
WORKER_ENV = {"MIMALLOC_PURGE_DELAY": "0", "MALLOC_MMAP_THRESHOLD_": "131072",
              "MALLOC_ARENA_MAX": "2"}


def export_repo_path() -> None:
    """Local Ray workers inherit the driver's environment: make the project importable
    there, and give them :data:`WORKER_ENV` (before a local ``ray.init``)."""
    os.environ["PYTHONPATH"] = os.pathsep.join(
        [str(REPO_ROOT)] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p])
    for key, value in WORKER_ENV.items():
        os.environ.setdefault(key, value)


def worker_runtime_env() -> dict:
    """The ``runtime_env`` to connect to a running cluster with: :data:`WORKER_ENV`, less
    what the job's own runtime env (``ray job submit --runtime-env``) already sets, which a
    job driver sees in its environment; Ray merges the two and refuses a variable set in
    both."""
    return {"env_vars": {k: v for k, v in WORKER_ENV.items() if k not in os.environ}}


def init_ray(settings: Settings, log=print, log_to_driver: bool = True) -> bool:
    """Connect to the cluster (``ray job submit``, ``RAY_ADDRESS`` or ``ray.address``), or
    start a local Ray sized for one machine, never joining another Ray on the machine.
    ``log_to_driver=False`` leaves the workers' output in Ray's log files instead of on
    this process's console. False when Ray was already initialised (a notebook or a
    test), so the caller leaves it running."""
    if ray.is_initialized():
        return False
    address = settings.ray.address or os.environ.get("RAY_ADDRESS")
    if address:
        ray.init(address=address, runtime_env=worker_runtime_env(),
                 log_to_driver=log_to_driver)
        log(f"connected to Ray at {address}: {resources_line()}")
        return True
    export_repo_path()
    kwargs = {"include_dashboard": False, "log_to_driver": log_to_driver}
    if settings.ray.object_store_memory_mb:
        kwargs["object_store_memory"] = settings.ray.object_store_memory_mb * 1024 * 1024
    if settings.ray.num_cpus:
        kwargs["num_cpus"] = settings.ray.num_cpus
    # "local": a Ray of its own even when another is registered on this machine (a `ray
    # start` head, a notebook's): without an address nothing is joined by accident
    ray.init(address="local", **kwargs)
    log(f"started a local Ray: {resources_line()}")
    return True


def resources_line() -> str:
    """The cluster in a few words: nodes, CPUs, GPUs, object store."""
    r = ray.cluster_resources()
    gib = r.get("object_store_memory", 0) / 2 ** 30
    return (f"{len(ray.nodes())} node(s), {r.get('CPU', 0):g} CPU, {r.get('GPU', 0):g} GPU, "
            f"{gib:.1f} GiB object store")


class Run:
    """One run of the flow over one input and one output root."""

    def __init__(self, settings: Settings, input_uri: str, log=None, console=None):
        self.settings = settings
        self.input_uri = input_uri
        self.output_uri = settings.output
        self.in_fs, self.in_root = storage.resolve(input_uri, settings.s3)
        self.fs, self.root = storage.resolve(settings.output, settings.s3)
        self.config_hash = settings.config_hash()
        self.timings: dict[str, float] = {}
        self.stage_info: dict[str, dict] = {}
        self.skipped: list[str] = []
        self._log = log or (lambda m: print(m, file=sys.stderr, flush=True))
        #: flows.logs.Console: detail lines to the log file, a progress line per stage
        self.console = console
        self.t0 = time.time()
        ctx = ray.data.DataContext.get_current()
        ctx.shuffle_strategy = ShuffleStrategy(settings.ray.shuffle_strategy)
        # a stage's own tasks read and write with pyarrow's S3 client, whose retries cover a
        # request but not a response stream cut mid-body: retry the task on the transient
        # S3 errors Ray retries its own I/O on (a task replays its input from the start and
        # Ray skips the blocks it already yielded; our tasks are deterministic)
        ctx.retried_map_errors = list(dict.fromkeys(list(ctx.retried_io_errors)
                                                    + TRANSIENT_S3_ERRORS))
        ctx.max_map_retries = settings.ray.map_retries
        if settings.ray.shuffle_strategy in UNSAFE_SHUFFLES:
            self.log(f"WARNING: ray.shuffle_strategy {settings.ray.shuffle_strategy} does not "
                     "survive the loss of a node: its aggregator actors are not restarted, so "
                     "the run fails (or, on small nodes, hangs) when a node holding one dies. "
                     "sort_shuffle_pull_based (the default) and shuffle_v2 recompute what a "
                     "lost node held.")

    # -- logging ---------------------------------------------------------------------------
    def log(self, msg: str) -> None:
        self._log(f"[arctic {time.time() - self.t0:7.1f}s] {msg}")

    def detail(self, msg: str) -> None:
        """A line for the log file (the console's with ``--verbose``, or without one)."""
        line = f"[arctic {time.time() - self.t0:7.1f}s] {msg}"
        self.console.detail(line) if self.console else self._log(line)

    # -- paths -----------------------------------------------------------------------------
    def path(self, rel: str) -> str:
        return f"{self.root}/{rel}" if rel else self.root

    def uri(self, rel: str) -> str:
        return storage.join(self.output_uri, rel)

    def exists(self, rel: str) -> bool:
        return storage.exists(self.fs, self.path(rel))

    def fs_arg(self):
        """The filesystem to give Ray (None for local paths: Ray handles them itself)."""
        return None if isinstance(self.fs, pafs.LocalFileSystem) else self.fs

    # -- datasets --------------------------------------------------------------------------
    def read(self, rel: str, columns=None, live: bool | None = None,
             schema: pa.Schema | None = None, rows_per_task: int | None = None,
             total_rows: int | None = None) -> ray.data.Dataset:
        """A dataset of the Parquet files under ``rel``: one task per file, streaming it in
        record batches (``read.batch_rows`` rows when ``content`` is read, more otherwise).

        ``rows_per_task`` with ``total_rows`` (the rows under ``rel``): tasks read several
        files each, about ``rows_per_task`` rows in all, and Ray Data merges a task's
        output into one block (up to its block-size limit). Shuffles read this way, so
        that their input blocks have a set size; bundling blocks with ``map_batches(
        batch_size=n)`` after a read does not do it: Ray Data fuses that map into the read
        and bundles ``n`` rows of the read's input, that is ``n`` files into one task.

        ``live``: True keeps rows no stage removed, False only the tombstones, None all.
        With ``schema`` given, rows are conformed to it (selected ``columns``), and a
        directory without files (a stage that wrote no rows) reads as an empty dataset.
        """
        files = (storage.list_files(self.fs, self.path(rel), (".parquet",))
                 if self.exists(rel) else [])
        target = schema.empty_table().select(columns).schema if (
            schema is not None and columns) else schema
        if not files:
            if target is None:
                raise FileNotFoundError(f"no Parquet files under {self.uri(rel)}")
            return ray.data.from_arrow(target.empty_table())
        content = columns is None or "content" in columns
        rows = self.settings.read.batch_rows if content else 65536
        per_task = 1
        if rows_per_task and total_rows:
            per_task = max(1, int(len(files) * rows_per_task / total_rows))
        ds = ray.data.from_items([{"path": f} for f in files], override_num_blocks=min(
            -(-len(files) // per_task), 4096))
        return ds.map_batches(_read_parquet_files, batch_size=per_task, batch_format="pyarrow",
                              fn_kwargs={"fs": self.fs, "columns": columns, "live": live,
                                         "schema": target, "rows": rows,
                                         "max_bytes": self.settings.read.batch_bytes
                                         if content else None})

    def write(self, ds: ray.data.Dataset, rel: str) -> None:
        """Write a dataset to ``rel`` under the output root, replacing what was there."""
        target = self.path(rel)
        storage.remove_dir(self.fs, target)
        storage.ensure_dir(self.fs, target)
        ds.write_parquet(target, filesystem=self.fs_arg(), compression="zstd")

    # -- stages ----------------------------------------------------------------------------
    def _marker(self, name: str) -> str:
        return self.path(f"_stages/{name}/_SUCCESS")

    def marker(self, name: str) -> dict | None:
        """A finished stage's marker (config hash, seconds, info, finish time), or None."""
        try:
            return json.loads(storage.read_bytes(self.fs, self._marker(name)))
        except (FileNotFoundError, OSError, ValueError):
            return None

    def stage_done(self, name: str) -> bool:
        try:
            info = json.loads(storage.read_bytes(self.fs, self._marker(name)))
        except (FileNotFoundError, OSError, ValueError):
            return False
        return info.get("config_hash") == self.config_hash

    def stage(self, name: str, fn) -> None:
        """Run a stage, timing it and recording its completion; skip it when resuming and
        it already finished under the same config."""
        if self.settings.resume and self.stage_done(name):
            marker = json.loads(storage.read_bytes(self.fs, self._marker(name)))
            self.stage_info[name] = marker.get("info", {})
            self.log(f"{name}: finished in an earlier run, skipped (--resume)")
            self.skipped.append(name)
            return
        storage.remove_dir(self.fs, self.path(f"_stages/{name}"))
        self.detail(f"{name}: started")
        set_stage(name)
        t = time.time()
        try:
            info = fn(self) or {}
        finally:
            set_stage(None)
            if self.console:
                self.console.end_progress()
        self.timings[name] = round(time.time() - t, 2)
        self.stage_info[name] = info
        storage.write_bytes(self.fs, self._marker(name), json.dumps(
            {"stage": name, "config_hash": self.config_hash, "seconds": self.timings[name],
             "info": info, "finished_unix": round(time.time(), 3),
             "finished_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}).encode())
        self.log(f"{name}: done in {self.timings[name]:.1f}s")


def actor_resources(cpus: float, gpus: float, resources: dict | None) -> dict:
    """``map_batches`` keyword arguments for an actor pool's resources. On a cluster the GPU
    stages also ask for their node group's custom resource (``annotator_gpu``,
    ``rewriter_gpu`` in ``cluster/aws.yaml``), which no CPU group offers; the GPU groups
    offer no CPU, so nothing else is placed on them or scales them up."""
    kwargs = {"num_cpus": cpus, "num_gpus": gpus}
    if resources:
        kwargs["resources"] = dict(resources)
    return kwargs


def release_memory() -> None:
    """Hand memory that a finished task freed back to the system: Arrow's allocator and
    glibc's malloc keep freed pages for reuse, so a long-lived worker would otherwise hold
    its largest task's peak (Arrow buffers, Python strings of file contents) for the rest
    of the run."""
    pa.default_memory_pool().release_unused()
    if _LIBC is not None:
        _LIBC.malloc_trim(0)


def _libc():
    import ctypes
    import ctypes.util

    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        return libc if hasattr(libc, "malloc_trim") else None
    except OSError:  # not glibc (macOS, musl): nothing to trim
        return None


_LIBC = _libc()


def _read_parquet_files(batch: pa.Table, fs: pafs.FileSystem, columns, live, schema,
                        rows: int, max_bytes: int | None = None):
    from flows.faults import maybe_die
    from operators.io import split_by_bytes
    from operators.schema import conform

    maybe_die("read")
    read_cols = columns
    if live is not None and columns and "removed_stage" not in columns:
        read_cols = list(columns) + ["removed_stage"]
    for path in batch.column("path").to_pylist():
        with fs.open_input_file(path) as f:
            pf = pq.ParquetFile(f)
            for b in pf.iter_batches(batch_size=rows, columns=read_cols):
                t = pa.Table.from_batches([b])
                if live is not None:
                    flag = pc.is_null(t.column("removed_stage"))
                    t = t.filter(flag if live else pc.invert(flag))
                if columns:  # with a schema, columns an older writer lacked become nulls
                    t = t.select([c for c in columns if c in t.column_names]
                                 if schema is not None else columns)
                if schema is not None:
                    t = conform(t, schema)
                if t.num_rows:
                    yield from split_by_bytes(t, max_bytes)
