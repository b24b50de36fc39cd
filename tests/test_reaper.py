"""operators/reaper.py: a process's children die with it, even when it is SIGKILLed (as Ray
kills an actor), and the watchdog leaves on its own when the parent stops them itself."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import psutil

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

PARENT = """
import subprocess, sys, time
from operators.reaper import reap_children_on_exit
kids = [subprocess.Popen(["sleep", "600"]) for _ in range(2)]
watchdog = reap_children_on_exit(period=0.2)
print(" ".join(str(k.pid) for k in kids), watchdog.pid, flush=True)
if sys.argv[1] == "stop":
    for k in kids:
        k.kill(); k.wait()
time.sleep(600)
"""


def _start(mode: str):
    proc = subprocess.Popen([sys.executable, "-c", PARENT, mode], cwd=ROOT,
                            stdout=subprocess.PIPE, text=True)
    *kids, watchdog = map(int, proc.stdout.readline().split())
    return proc, kids, watchdog


def _gone(pid: int, within: float = 10.0) -> bool:
    end = time.time() + within
    while time.time() < end:
        try:
            if psutil.Process(pid).status() == psutil.STATUS_ZOMBIE:
                return True
        except psutil.NoSuchProcess:
            return True
        time.sleep(0.1)
    return False


def test_children_die_when_the_parent_is_killed():
    proc, kids, watchdog = _start("wait")
    try:
        assert all(psutil.pid_exists(k) for k in kids)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        assert all(_gone(k) for k in kids), "children outlived their SIGKILLed parent"
        assert _gone(watchdog)
    finally:
        for pid in kids + [watchdog]:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


def test_watchdog_leaves_when_the_parent_stops_its_children():
    proc, kids, watchdog = _start("stop")
    try:
        assert _gone(watchdog), "watchdog stayed after its children were gone"
        assert proc.poll() is None  # the parent is untouched
    finally:
        proc.kill()
        proc.wait()
