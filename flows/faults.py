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

Without the variable this is one dictionary lookup.
"""

from __future__ import annotations

import os

ENV = "ARCTIC_FAULTS"


def _parse(spec: str) -> tuple[str, dict[str, int]]:
    directory, _, points = spec.rpartition(":")
    counts = {}
    for item in points.split(","):
        if item.strip():
            name, _, n = item.partition("=")
            counts[name.strip()] = int(n or 1)
    return directory, counts


def maybe_die(point: str) -> None:
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


def deaths(directory: str) -> dict[str, int]:
    """Tokens claimed per point (for the tests' assertions)."""
    out: dict[str, int] = {}
    for name in os.listdir(directory):
        point = name.rsplit(".", 1)[0]
        out[point] = out.get(point, 0) + 1
    return out
