"""The run's console (flows.logs): what reaches the screen, what only the log file gets."""

from __future__ import annotations

import io
import logging
import os
import subprocess
import sys
import time
import warnings
from pathlib import Path

from flows.logs import Console, _fmt_s

ROOT = Path(__file__).resolve().parents[1]


def test_console_keeps_errors_and_counts_warnings(tmp_path):
    stream = io.StringIO()
    c = Console(str(tmp_path / "logs"), stream=stream)
    c.capture()
    try:
        logging.getLogger("ray.data").info("Starting execution of Dataset x")
        logging.getLogger("ray.data").warning("operator name truncated")
        logging.getLogger("ray.data").warning("operator name truncated")
        logging.getLogger("some.library").info("chatter")
        warnings.warn("a deprecated call", DeprecationWarning, stacklevel=1)
        logging.getLogger("ray").error("a task failed for good")
        c.say("[arctic 1.0s] ingest: done in 1.0s")
        c.detail("[arctic 1.0s] near_dedup: round 1: 5 edges")
    finally:
        c.close()
    shown = stream.getvalue()
    assert "a task failed for good" in shown and "ingest: done" in shown
    for hidden in ("Starting execution", "truncated", "chatter", "deprecated", "round 1"):
        assert hidden not in shown
    log = (tmp_path / "logs" / "arctic.log").read_text()
    for line in ("Starting execution of Dataset x", "operator name truncated", "chatter",
                 "a deprecated call", "a task failed for good", "ingest: done",
                 "round 1: 5 edges"):
        assert line in log
    lines = c.warning_lines()
    assert lines[0].startswith("warnings: ") and "kinds; all of them in" in lines[0]
    assert any(ln.endswith("2 x ray.data: operator name truncated") for ln in lines)
    # a Python warning by its category and text, not the file it came from
    assert any(ln.endswith("x DeprecationWarning: a deprecated call") for ln in lines)
    # the loggers are as they were: a notebook or test process goes on
    assert not any(type(h).__name__ == "_Handler" for h in logging.getLogger("ray.data").handlers)


def test_verbose_console_keeps_everything(tmp_path):
    stream = io.StringIO()
    c = Console(str(tmp_path / "logs"), verbose=True, stream=stream)
    root = logging.getLogger()
    kept = list(root.handlers)  # pytest's own capture: the CLI's root logger has none
    for h in kept:
        root.removeHandler(h)
    c.capture()
    try:
        logging.getLogger("some.library").warning("a library warning")
        c.detail("a detail line")
    finally:
        c.close()
        for h in kept:
            root.addHandler(h)
    assert "a library warning" in stream.getvalue() and "a detail line" in stream.getvalue()
    assert "a library warning" in (tmp_path / "logs" / "arctic.log").read_text()


def test_progress_lines_are_spaced_when_not_a_terminal(tmp_path):
    stream = io.StringIO()
    c = Console(str(tmp_path / "logs"), stream=stream, every_s=0.2)
    for i in range(20):
        c.progress(f"[arctic score] step {i}")
        time.sleep(0.02)
    c.close()
    shown = stream.getvalue().splitlines()
    assert 1 <= len(shown) <= 3 and shown[0] == "[arctic score] step 0"
    assert _fmt_s(75) == "1m15s" and _fmt_s(3700) == "1h01m" and _fmt_s(9) == "9s"


def test_native_writes_to_stderr_go_to_the_log_file(tmp_path):
    """What bypasses Python's logging (Ray's C++ core writes to descriptor 2) lands in the
    log file; the console still prints; after close, stderr is the terminal's again."""
    script = f"""
import os, sys
sys.path.insert(0, {str(ROOT)!r})
from flows.logs import Console
c = Console({str(tmp_path / 'logs')!r})
c.capture()
os.write(2, b"[E core_worker.cc:2465] native noise\\n")
print("python stderr noise", file=sys.stderr, flush=True)
c.say("[arctic 0.0s] a flow line")
c.close()
print("after close", file=sys.stderr, flush=True)
"""
    res = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                         timeout=120, env={**os.environ, "PYTHONWARNINGS": "ignore"})
    assert res.returncode == 0, res.stderr
    assert "a flow line" in res.stderr and "after close" in res.stderr
    assert "native noise" not in res.stderr and "python stderr noise" not in res.stderr
    log = (tmp_path / "logs" / "arctic.log").read_text()
    assert "native noise" in log and "python stderr noise" in log and "a flow line" in log
