"""Where a run's messages go.

The console (stderr) gets the flow's own lines: a line per finished stage, a progress line
while a stage runs (rewritten in place on a terminal, every ``every_s`` seconds otherwise),
errors, and at the end one summary of the warnings. Everything else, Ray's and Ray Data's
messages, Python warnings, the flow's detail lines and, for a local Ray, the logs of every
worker (vLLM's engine included), goes to the log directory, ``OUT/logs/`` (``arctic.log``
and ``ray/``). ``--verbose`` puts it all back on the console.
"""

from __future__ import annotations

import collections
import importlib
import logging
import os
import re
import shutil
import sys
import threading
import time

#: loggers whose records the console only counts (below ERROR); the file gets them all.
#: Python's warnings (``py.warnings``) and other libraries' records reach the root logger.
CAPTURED = ("ray", "ray.data", "")


def _fmt_s(s: float) -> str:
    s = int(max(0, s))
    return f"{s // 3600}h{s // 60 % 60:02d}m" if s >= 3600 else (
        f"{s // 60}m{s % 60:02d}s" if s >= 60 else f"{s}s")


class Console:
    """The run's console and its log file (``<log_dir>/arctic.log``)."""

    def __init__(self, log_dir: str, verbose: bool = False, stream=None,
                 every_s: float = 30.0):
        self.dir = log_dir
        os.makedirs(log_dir, exist_ok=True)
        self.file = open(os.path.join(log_dir, "arctic.log"), "a", buffering=1,
                         encoding="utf-8")
        self.verbose = verbose
        self.stream = stream or sys.stderr
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self.every_s = every_s
        self.warnings: collections.Counter = collections.Counter()
        self._lock = threading.Lock()
        self._status = ""      # the progress line shown on a terminal
        self._last_line = 0.0  # when a progress line was last printed (not a terminal)
        self._handlers: list = []
        self._saved: dict = {}
        self._saved_fd: int | None = None

    # -- the flow's own lines --------------------------------------------------------------
    def say(self, msg: str) -> None:
        """A line on the console and in the file."""
        with self._lock:
            self.file.write(msg + "\n")
            self._clear()
            self.stream.write(msg + "\n")
            self._redraw()
            self.stream.flush()

    def detail(self, msg: str) -> None:
        """A line in the file (on the console too with ``--verbose``)."""
        if self.verbose:
            return self.say(msg)
        with self._lock:
            self.file.write(msg + "\n")

    def progress(self, text: str) -> None:
        """The running stage's progress: one line rewritten in place on a terminal, a
        line every ``every_s`` seconds otherwise."""
        with self._lock:
            if self.tty:
                self._clear()
                self._status = text[:max(20, shutil.get_terminal_size().columns - 1)]
                self._redraw()
                self.stream.flush()
            elif time.time() - self._last_line >= self.every_s:
                self._last_line = time.time()
                self.stream.write(text + "\n")
                self.stream.flush()

    def end_progress(self) -> None:
        with self._lock:
            self._clear()
            self._status = ""
            self._last_line = time.time()

    def _clear(self) -> None:
        if self.tty and self._status:
            self.stream.write("\r\033[K")

    def _redraw(self) -> None:
        if self.tty and self._status:
            self.stream.write(self._status)

    # -- other libraries' messages -----------------------------------------------------------
    def capture(self) -> None:
        """Route Ray's, Ray Data's and Python's log records and warnings to the file, and
        leave only errors (and, at the end, a count of the warnings) on the console. With
        ``verbose`` the file gets a copy and the console keeps what it had."""
        importlib.import_module("ray.data")  # configures Ray's and Ray Data's loggers

        logging.captureWarnings(True)
        for name in CAPTURED:
            logger = logging.getLogger(name)
            if name and logger.propagate:  # the root logger's handler sees its records
                continue
            self._saved[name] = (list(logger.handlers), logger.level)
            # with --verbose a logger that printed nothing of its own (the root) prints
            # through the handler; the others keep their own console handlers
            handler = _Handler(self, echo=self.verbose and not logger.handlers)
            handler.setFormatter(logging.Formatter(
                "%(asctime)s %(levelname)s %(name)s: %(message)s"))
            if not self.verbose:
                for h in list(logger.handlers):
                    logger.removeHandler(h)
            if name == "":
                logger.setLevel(logging.INFO)
            logger.addHandler(handler)
            self._handlers.append((logger, handler))
        install_progress(self)
        if not self.verbose:
            self._redirect_stderr()

    def _redirect_stderr(self) -> None:
        """Point this process's file descriptor 2 at the log file, for what bypasses
        Python's logging (Ray's C++ core, native libraries); the console writes to a
        copy of the original descriptor."""
        try:
            fd = self.stream.fileno()
        except (AttributeError, OSError, ValueError):  # a test's captured stream
            return
        if fd != 2:
            return
        sys.stderr.flush()
        self._saved_fd = os.dup(2)
        self.stream = os.fdopen(os.dup(2), "w", buffering=1, encoding="utf-8",
                                errors="replace")
        os.dup2(self.file.fileno(), 2)

    def release(self) -> None:
        """Put the loggers and stderr back as they were (the process may go on: a test, a
        notebook, or an exception on its way to the console)."""
        if self._saved_fd is not None:
            sys.stderr.flush()
            os.dup2(self._saved_fd, 2)
            os.close(self._saved_fd)
            self._saved_fd = None
            self.stream.close()
            self.stream = sys.stderr
        logging.captureWarnings(False)
        for logger, handler in self._handlers:
            logger.removeHandler(handler)
        self._handlers = []
        for name, (handlers, level) in self._saved.items():
            logger = logging.getLogger(name)
            for h in handlers:
                if h not in logger.handlers:
                    logger.addHandler(h)
            logger.setLevel(level)
        self._saved = {}
        uninstall_progress()

    def warning_lines(self) -> list[str]:
        if not self.warnings:
            return []
        total = sum(self.warnings.values())
        lines = [f"warnings: {total} ({len(self.warnings)} kinds; all of them in "
                 f"{os.path.join(self.dir, 'arctic.log')})"]
        for text, n in self.warnings.most_common(5):
            lines.append(f"  {n:>4} x {text}")
        return lines

    def close(self) -> None:
        if self.file.closed:
            return
        self.release()
        self.file.close()


class _Handler(logging.Handler):
    def __init__(self, console: Console, echo: bool = False):
        # INFO and up: Ray Data's DEBUG records (metrics every few seconds) stay in its own
        # ray-data.log, under logs/ray/ for a local Ray
        super().__init__(logging.INFO)
        self.console, self.echo = console, echo

    def emit(self, record: logging.LogRecord) -> None:
        try:
            text = self.format(record)
        except Exception:  # noqa: BLE001 - a bad record must not stop the run
            text = str(record.msg)
        c = self.console
        if self.echo and record.levelno >= logging.WARNING or (
                record.levelno >= logging.ERROR and not c.verbose):
            return c.say(text)
        with c._lock:
            c.file.write(text + "\n")
        if record.levelno >= logging.WARNING:
            msg = record.getMessage().strip()
            first = msg.splitlines()[0] if msg else ""
            if record.name == "py.warnings":  # "path:line: Category: text" → "Category: text"
                m = _WARNING_AT.match(first)
                key = m.group(1) if m else first
            else:
                key = f"{record.name}: {first}"
            c.warnings[key[:120]] += 1


_WARNING_AT = re.compile(r"^.*?:\d+: (\w+(?:Warning|Error): .*)$")


def ray_session_dir() -> str | None:
    """The local Ray's session folder (its logs are under ``logs/``)."""
    import ray

    try:
        return ray._private.worker._global_node.get_session_dir_path()
    except AttributeError:  # not a local Ray, or Ray moved it
        return None


def copy_ray_logs(session_dir: str | None, log_dir: str) -> str | None:
    """Copy a local Ray's logs (workers, Ray Data, the engine) into ``log_dir/ray``."""
    src = os.path.join(session_dir, "logs") if session_dir else None
    if not src or not os.path.isdir(src):
        return None
    dst = os.path.join(log_dir, "ray")
    shutil.copytree(src, dst, dirs_exist_ok=True,
                    ignore=shutil.ignore_patterns("*.sock", "*.pid"))
    return dst


# -- Ray Data's progress, as one line ------------------------------------------------------

_STAGE = {"name": None, "t0": 0.0, "console": None}


def set_stage(name: str | None) -> None:
    """The stage the progress line names (the run sets it as a stage starts)."""
    _STAGE["name"], _STAGE["t0"] = name, time.time()


def _progress_text(topology, started: float) -> str | None:
    """Inputs taken by the first operator (files, usually), rows out of the last one that
    is not a write, its MB/s, and an ETA: from the inputs while they are being read, then
    from the rows, once the first operator has read them all."""
    ops = [s.op for s in topology.values()]
    if len(ops) < 2:
        return None
    work = [op for op in ops[1:] if not op.name.endswith("Write")] or ops[1:]
    first, last = ops[1], work[-1]
    total_in = ops[0].num_outputs_total()
    done_in = getattr(first.metrics, "num_task_inputs_processed", 0)
    rows = getattr(last.metrics, "rows_task_outputs_generated", 0)
    mb = getattr(last.metrics, "bytes_task_outputs_generated", 0) / 1e6
    elapsed = time.time() - started
    parts = [f"{rows:,} rows", f"{mb / elapsed:.1f} MB/s" if elapsed > 1 else None]
    left = None
    if total_in:
        parts.insert(0, f"{done_in}/{total_in} inputs")
        if 0 < done_in < total_in:
            left = elapsed * (total_in - done_in) / done_in
        elif done_in >= total_in and last is not work[0]:
            read = getattr(work[0].metrics, "rows_task_outputs_generated", 0)
            parts[1] = f"{rows:,}/{read:,} rows"
            if 0 < rows < read:
                left = elapsed * (read - rows) / rows
    if left is not None and elapsed >= 10:  # a rate from the first seconds misleads
        parts.append(f"ETA {_fmt_s(left)}")
    stage = _STAGE["name"] or "ray data"
    return (f"[arctic {stage}] {_fmt_s(time.time() - _STAGE['t0'])}: "
            + ", ".join(p for p in parts if p))


_ORIGINAL = {}


def install_progress(console: Console) -> bool:
    """Replace Ray Data's progress display (bars, or a log block every few seconds) with
    the console's one line. Ray Data has no public hook for this; where its internals
    differ from what this expects, its progress display is simply turned off."""
    import ray.data

    _STAGE["console"] = console
    ctx = ray.data.DataContext.get_current()
    try:
        from ray.data._internal.execution import streaming_executor as se
        from ray.data._internal.progress.base_progress import NoopExecutionProgressManager
    except ImportError:
        ctx.enable_progress_bars = False
        return False

    class _OneLine(NoopExecutionProgressManager):
        def __init__(self, dataset_id, topology, show_op_progress, verbose_progress):
            super().__init__(dataset_id, topology, show_op_progress, verbose_progress)
            self.topology, self.t0, self.last = topology, time.time(), 0.0

        def update_operator_progress(self, opstate, resource_manager) -> None:
            if time.time() - self.last < 0.5:
                return
            self.last = time.time()
            try:
                text = _progress_text(self.topology, self.t0)
            except Exception:  # noqa: BLE001 - progress is advice, never a failure
                text = None
            if text and _STAGE["console"] is not None:
                _STAGE["console"].progress(text)

    if "get" not in _ORIGINAL:
        _ORIGINAL["get"] = se.get_progress_manager
    se.get_progress_manager = lambda ctx, dataset_id, topology, verbose: _OneLine(
        dataset_id, topology, False, verbose)
    return True


def uninstall_progress() -> None:
    _STAGE["console"] = None
    if "get" in _ORIGINAL:
        from ray.data._internal.execution import streaming_executor as se

        se.get_progress_manager = _ORIGINAL.pop("get")
