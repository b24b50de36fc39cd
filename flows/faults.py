"""Fault injection for the reliability tests: kill the worker process that reaches a named
point of the flow, a fixed number of times.

``ARCTIC_FAULTS="DIR:point=N,point=N"`` (read by workers, which inherit the driver's
environment on a local Ray): the first N times any worker reaches ``point`` it claims a
token (a file created with O_EXCL under DIR, so exactly N deaths across processes and
retries) and exits at once with ``os._exit``, as a killed process would: no cleanup, no
exception for Ray to catch. Ray sees a dead worker and retries its task. Points:

- ``read``: inside a stage's read task (every stage reads its input this way), a map;
- ``ingest``: inside phase 1's read-and-clean task, a map;
- ``shuffle``: inside the reduce side of a hash-partitioned shuffle (exact and near dedup,
  connected components, the ledger join), after the shuffle delivered the partition.

``ARCTIC_HOLD=DIR`` (the node-loss tests, on a multi-node cluster): a test *arms* a point
by creating the file ``DIR/<point>``; the first worker that reaches the point afterwards
claims it (an atomic rename, so exactly one worker per arming), writes its Ray node id to
``DIR/<point>.node`` and waits there (up to ``hold_s``, 300 s) while the test kills that
node. The task is then in flight on the node that dies, wherever the scheduler put it.
Points besides the three above: ``shuffle.<operator>`` (the reduce side of one shuffle:
``shuffle.choose_representatives`` exact dedup, ``shuffle.bucket_edges`` the LSH buckets,
``shuffle.large_star_step`` a component round), ``group`` (a grouping partition),
``score`` (a phase-2 annotator actor's batch), ``generate`` (a phase-3 rewriter actor's
batch), ``mixture`` (a mixture shard's write).

Without the variables this is two dictionary lookups.
"""

from __future__ import annotations

import os

ENV = "ARCTIC_FAULTS"
HOLD_ENV = "ARCTIC_HOLD"


def _parse(spec: str) -> tuple[str, dict[str, int]]:
    directory, _, points = spec.rpartition(":")
    counts = {}
    for item in points.split(","):
        if item.strip():
            name, _, n = item.partition("=")
            counts[name.strip()] = int(n or 1)
    return directory, counts


def maybe_die(point: str, *aliases: str, hold_s: float = 300.0) -> None:
    """The fault point ``point``; ``aliases`` name the same place more narrowly for a hold
    (``shuffle.bucket_edges``: the LSH bucket shuffle, not any shuffle)."""
    held = os.environ.get(HOLD_ENV)
    if held:
        for name in (point, *aliases):
            _maybe_hold(held, name, hold_s)
    spec = os.environ.get(ENV)
    if not spec:
        return
    directory, counts = _parse(spec)
    for k in range(counts.get(point, 0)):
        token = os.path.join(directory, f"{point}.{k}")
        try:
            fd = os.open(token, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        except FileExistsError:
            continue
        os.write(fd, f"{os.getpid()}\n".encode())
        os.close(fd)
        os._exit(137)  # as SIGKILL would leave it: no cleanup, no exception


def _maybe_hold(directory: str, point: str, hold_s: float) -> None:
    armed = os.path.join(directory, point)
    try:
        os.rename(armed, f"{armed}.claimed")  # one winner per arming
    except FileNotFoundError:
        return
    import time

    import ray

    node = ray.get_runtime_context().get_node_id()
    tmp = f"{armed}.node.tmp{os.getpid()}"
    with open(tmp, "w") as f:
        f.write(node)
    os.replace(tmp, f"{armed}.node")
    deadline = time.time() + hold_s
    while time.time() < deadline:  # the test kills this node meanwhile
        time.sleep(0.2)


def deaths(directory: str) -> dict[str, int]:
    """Tokens claimed per point (for the tests' assertions)."""
    out: dict[str, int] = {}
    for name in os.listdir(directory):
        point = name.rsplit(".", 1)[0]
        out[point] = out.get(point, 0) + 1
    return out
