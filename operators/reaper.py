"""Children that die with their parent, even when the parent is killed outright.

vLLM runs its engine core (and, with tensor parallelism, its workers) in child processes.
When Ray kills the actor that owns them (its memory monitor, a lost owner, ``ray.kill``)
the actor gets SIGKILL and no cleanup runs; the children, several GB of host memory each
and the GPUs' memory on a cluster, live on and the replacement actor cannot allocate.
:func:`reap_children_on_exit` starts a small watchdog process, in a session of its own,
that polls the parent once a second and kills the children it was given when the parent
is gone. Processes are named by (pid, start time), so a recycled pid is never killed.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

_WATCHDOG = r"""
import json, sys, time
import psutil

def same(pid, started):
    try:
        return psutil.Process(pid).create_time() == started
    except psutil.Error:
        return False

parent, started, kids, period = int(sys.argv[1]), float(sys.argv[2]), json.loads(sys.argv[3]), float(sys.argv[4])
while same(parent, started):
    if not any(same(p, t) for p, t in kids):  # the parent shut them down itself
        sys.exit(0)
    time.sleep(period)
for p, t in kids:
    if same(p, t):
        try:
            psutil.Process(p).kill()
        except psutil.Error:
            pass
"""


def reap_children_on_exit(period: float = 1.0) -> subprocess.Popen | None:
    """Starts the watchdog over this process's children as they are now (all
    descendants); None when there are none. Call it again after starting new ones."""
    import psutil

    me = psutil.Process(os.getpid())
    kids = [(p.pid, p.create_time()) for p in me.children(recursive=True)]
    if not kids:
        return None
    return subprocess.Popen(
        [sys.executable, "-c", _WATCHDOG, str(me.pid), repr(me.create_time()),
         json.dumps(kids), str(period)],
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        start_new_session=True, close_fds=True)
