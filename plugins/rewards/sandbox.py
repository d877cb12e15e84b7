"""A sandbox for model-written programs: one bubblewrap jail per run, resource limits, a pool.

Model code is hostile until proven otherwise (Reasoning360 runs it with ``unsafe_local`` by
default; we do not). Each program runs in its own process tree:

- **isolation**: bubblewrap (``bwrap``, Debian package ``bubblewrap``; ``make setup`` installs
  it) with new user, PID, network, IPC, UTS and cgroup namespaces. The network namespace has
  no interfaces up, so no socket reaches anything, 127.0.0.1 included. The file system is
  ``/usr`` read-only plus a private, size-capped tmpfs at ``/work`` (the program's
  directory) and ``/tmp``; nothing of the host's files, home or project is visible, so a
  program can change no file outside its directory. The environment is cleared (no secrets
  leak) and the PID namespace hides every host process, so a program cannot signal its
  parent or the trainer.
- **limits** (``setrlimit`` in the child before ``bwrap`` starts): CPU seconds, address
  space, size of any file written (stdout and stderr are files, so this caps output too),
  processes (counted per user: as root each run gets its own unprivileged uid, so a fork
  bomb in one run cannot starve another), open files, no core dumps; plus a wall-clock
  timeout after which the whole process tree is killed (bwrap's ``--die-with-parent`` takes
  the PID namespace down with it).
- **pool**: ``Sandbox.map`` runs many programs in parallel from a thread pool (each thread
  only waits on its child process).

Why bubblewrap and not bare ``unshare``: it builds the private mount tree (tmpfs root,
read-only binds) without root, which ``unshare`` alone cannot, and it is what Reasoning360's
``bwrap_exec`` uses. Programs run under the system Python (``/usr/bin/python3``, standard
library only), which the unprivileged sandbox user can read; set ``python=`` to change it.

What runs in a jail is the answer's program itself (stdin/stdout tests: the expected output
never enters the jail, and the caller compares stdout), or, for function-call tests, the
trusted harness ``_harness.py``, which runs the answer in a second process of the same jail
and proves a pass with a nonce (see its docstring): a program's exit status alone never
passes a test.

Every run returns a :class:`Result` whose ``status`` says what happened (``ok``, ``error``,
``timeout``, ``memory``, ``output_limit``, ``killed``, ``sandbox_error``) and a one-line
``reason``; nothing a program does raises in the caller.
"""
from __future__ import annotations

import itertools
import os
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

STATUSES = ("ok", "error", "timeout", "memory", "output_limit", "killed", "sandbox_error")
_UID_BASE = 61000          # unprivileged uids used when the caller is root: 61000..61999
_uid_counter = itertools.count()
_uid_lock = threading.Lock()
_BWRAP_ENV = {"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8"}


class SandboxUnavailable(RuntimeError):
    """bubblewrap is missing or cannot create namespaces on this machine."""


@dataclass(frozen=True)
class Limits:
    wall_s: float = 6.0          # wall-clock seconds before the process tree is killed
    cpu_s: int = 4               # CPU seconds (RLIMIT_CPU)
    memory_mb: int = 512         # address space (RLIMIT_AS)
    file_mb: int = 4             # largest file a program may write, stdout/stderr included
    tmpfs_mb: int = 16           # size of the private /work and /tmp
    nproc: int = 16              # processes and threads of the sandbox user
    nofile: int = 64             # open file descriptors
    output_bytes: int = 65536    # stdout/stderr bytes read back into the result


@dataclass(frozen=True)
class Result:
    status: str
    returncode: int | None
    stdout: str
    stderr: str
    wall_s: float
    reason: str

    @property
    def ok(self) -> bool:
        return self.status == "ok"


def default_python() -> str:
    return "/usr/bin/python3" if Path("/usr/bin/python3").exists() else sys.executable


def _sandbox_uid() -> int:
    with _uid_lock:
        return _UID_BASE + next(_uid_counter) % 1000


def _own_process_count() -> int:
    uid, n = os.getuid(), 0
    for p in Path("/proc").iterdir():
        if p.name.isdigit():
            try:
                n += p.stat().st_uid == uid
            except OSError:
                pass
    return n


class Sandbox:
    """Run Python programs under bubblewrap with limits; see the module docstring."""

    def __init__(self, limits: Limits = Limits(), python: str | None = None) -> None:
        self.limits = limits
        self.python = python or default_python()
        self.bwrap = shutil.which("bwrap")
        if self.bwrap is None:
            raise SandboxUnavailable(
                "the code sandbox needs bubblewrap (bwrap), which is not installed: "
                "`make setup` installs it on Debian/Ubuntu (apt-get install bubblewrap)")

    # --- one program ---------------------------------------------------------------------
    def _argv(self, prog: Path) -> list[str]:
        lim = self.limits
        argv = [self.bwrap, "--unshare-all", "--die-with-parent", "--new-session",
                "--cap-drop", "ALL", "--clearenv",
                "--setenv", "PATH", "/usr/bin:/bin", "--setenv", "HOME", "/work",
                "--setenv", "PYTHONHASHSEED", "0",
                "--ro-bind", "/usr", "/usr"]
        for top in ("/bin", "/lib", "/lib64", "/lib32", "/sbin"):
            if os.path.islink(top):
                argv += ["--symlink", os.readlink(top), top]
            elif os.path.isdir(top):
                argv += ["--ro-bind", top, top]
        if not self.python.startswith("/usr/"):
            prefix = sys.base_prefix
            argv += ["--ro-bind", prefix, prefix]
        size = str(lim.tmpfs_mb * 2**20)
        argv += ["--proc", "/proc", "--dev", "/dev",
                 "--size", size, "--tmpfs", "/tmp", "--size", size, "--tmpfs", "/work",
                 "--ro-bind", str(prog), "/work/main.py", "--chdir", "/work",
                 "--", self.python, "-I", "-B", "main.py"]
        return argv

    def _preexec(self, uid: int | None, nproc: int):
        lim = self.limits

        def apply() -> None:
            os.setsid()
            # CPU: SIGXCPU at the soft limit (reported as a timeout), SIGKILL a second later
            resource.setrlimit(resource.RLIMIT_CPU, (lim.cpu_s, lim.cpu_s + 1))
            for res, value in ((resource.RLIMIT_AS, lim.memory_mb * 2**20),
                               (resource.RLIMIT_FSIZE, lim.file_mb * 2**20),
                               (resource.RLIMIT_NOFILE, lim.nofile),
                               (resource.RLIMIT_CORE, 0)):
                resource.setrlimit(res, (value, value))
            if uid is not None:   # root: drop to an unprivileged uid so RLIMIT_NPROC binds
                os.setgroups([])
                os.setgid(uid)
                os.setuid(uid)
            resource.setrlimit(resource.RLIMIT_NPROC, (nproc, nproc))
        return apply

    def run(self, code: str, stdin: str = "") -> Result:
        """Run ``code`` as ``/work/main.py`` with ``stdin``; never raises for what it does."""
        lim = self.limits
        start = time.monotonic()
        host = Path(tempfile.mkdtemp(prefix="arl-sbx-"))
        try:
            uid = _sandbox_uid() if os.geteuid() == 0 else None
            nproc = lim.nproc if uid is not None else _own_process_count() + lim.nproc
            prog = host / "main.py"
            prog.write_text(code)
            (host / "stdin").write_text(stdin)
            os.chmod(host, 0o755)
            prog.chmod(0o644)
            with open(host / "stdin", "rb") as fin, open(host / "stdout", "wb") as fout, \
                    open(host / "stderr", "wb") as ferr:
                try:
                    proc = subprocess.Popen(self._argv(prog), stdin=fin, stdout=fout, stderr=ferr,
                                            preexec_fn=self._preexec(uid, nproc), close_fds=True,
                                            env=_BWRAP_ENV)   # bwrap's own env is visible as /proc/1/environ
                except OSError as exc:
                    return Result("sandbox_error", None, "", "", 0.0, f"could not start bwrap: {exc}")
                timed_out = False
                try:
                    rc = proc.wait(timeout=lim.wall_s)
                except subprocess.TimeoutExpired:
                    timed_out = True
                    _kill_tree(proc)
                    rc = proc.wait()
            wall = time.monotonic() - start
            out = _read_capped(host / "stdout", lim.output_bytes)
            err = _read_capped(host / "stderr", lim.output_bytes)
            return _classify(rc, timed_out, out, err, wall, lim)
        finally:
            shutil.rmtree(host, ignore_errors=True)

    # --- many programs ----------------------------------------------------------------------
    def map(self, jobs: list[tuple[str, str]], workers: int | None = None) -> list[Result]:
        """Run ``(code, stdin)`` jobs in parallel; results in order."""
        if not jobs:
            return []
        workers = workers or min(len(jobs), max(2, 2 * (os.cpu_count() or 1)))
        with ThreadPoolExecutor(workers) as pool:
            return list(pool.map(lambda job: self.run(*job), jobs))


def _kill_tree(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    try:
        proc.kill()
    except ProcessLookupError:
        pass


def _read_capped(path: Path, cap: int) -> str:
    with open(path, "rb") as f:
        return f.read(cap).decode("utf-8", errors="replace")


def _classify(rc: int, timed_out: bool, out: str, err: str, wall: float, lim: Limits) -> Result:
    """Turn an exit into a status. bwrap exits with the program's code; a signal death of
    the program shows as 128 + signal number (a direct kill of bwrap as a negative code)."""
    sig = -rc if rc < 0 else (rc - 128 if rc > 128 else 0)
    tail = err.strip().splitlines()[-1][:200] if err.strip() else ""
    if timed_out:
        return Result("timeout", rc, out, err, wall, f"killed after the {lim.wall_s:g} s wall-clock limit")
    if sig == signal.SIGXCPU:
        return Result("timeout", rc, out, err, wall, f"exceeded the {lim.cpu_s} s CPU limit")
    if sig == signal.SIGXFSZ or "File too large" in err:
        return Result("output_limit", rc, out, err, wall, f"wrote more than the {lim.file_mb} MiB file/output limit")
    if "MemoryError" in err or "Cannot allocate memory" in err:
        return Result("memory", rc, out, err, wall, f"exceeded the {lim.memory_mb} MiB memory limit")
    if sig:
        return Result("killed", rc, out, err, wall, f"killed by signal {signal.Signals(sig).name}"
                      if sig in signal.valid_signals() else f"killed by signal {sig}")
    if rc == 1 and tail.startswith("bwrap:"):
        return Result("sandbox_error", rc, out, err, wall, tail)
    if rc != 0:
        return Result("error", rc, out, err, wall, f"exit code {rc}: {tail}" if tail else f"exit code {rc}")
    return Result("ok", rc, out, err, wall, "exited normally")
