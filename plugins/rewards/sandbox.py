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
never enters the jail, and the caller compares stdout), or, for function-call tests, two jails
joined by two pipes (``run_paired``): the trusted harness ``_harness.py`` with the tests and a
nonce in one, the answer in the other, in a PID namespace where no process holds anything
secret (see the harness's docstring). A program's exit status alone never passes a test.

Every jail also gets a seccomp filter (``_seccomp.py``: no ``ptrace``, ``process_vm_*``,
``pidfd_*`` or ``kcmp``). bwrap reports the host pid of the jail's PID 1 on
``--json-status-fd``; the host holds a pidfd of it and, when the run ends or times out,
kills it and reaps bwrap, which returns only after the kernel has killed every process of
the namespace: nothing of a jail runs once its result is read. Output past
``Limits.output_bytes`` is a failure (``output_limit``), never a silent truncation.

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

from plugins.rewards import _seccomp

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

    # --- one jail --------------------------------------------------------------------------
    def _argv(self, prog: Path, args: tuple[str, ...], seccomp_fd: int | None, status_fd: int) -> list[str]:
        lim = self.limits
        # PID 1 of the jail is bwrap's reaper, which holds the jail's stdin and stdout and runs
        # as the jail's user: a jail therefore holds nothing its program may not see (function
        # tests run the answer in a jail of its own, ``run_paired``). When the program exits,
        # the reaper exits and the kernel kills every process the program left behind.
        argv = [self.bwrap, "--unshare-all", "--die-with-parent", "--new-session",
                "--cap-drop", "ALL", "--clearenv", "--json-status-fd", str(status_fd),
                "--setenv", "PATH", "/usr/bin:/bin", "--setenv", "HOME", "/work",
                "--setenv", "PYTHONHASHSEED", "0",
                "--ro-bind", "/usr", "/usr"]
        if seccomp_fd is not None:
            argv += ["--seccomp", str(seccomp_fd)]
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
                 "--", self.python, "-I", "-B", "main.py", *args]
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

    def _spawn(self, prog: Path, stdin, stdout, stderr, args: tuple[str, ...] = (),
               pass_fds: tuple[int, ...] = ()) -> "_Jail":
        """Start one jail; raises OSError when bwrap cannot start."""
        lim = self.limits
        uid = _sandbox_uid() if os.geteuid() == 0 else None   # each jail its own uid
        nproc = lim.nproc if uid is not None else _own_process_count() + lim.nproc
        bpf = _seccomp.program()
        filt_r = None
        if bpf is not None:
            filt_r, filt_w = os.pipe()
            os.write(filt_w, bpf)
            os.close(filt_w)
        stat_r, stat_w = os.pipe()
        try:
            proc = subprocess.Popen(
                self._argv(prog, args, filt_r, stat_w), stdin=stdin, stdout=stdout, stderr=stderr,
                preexec_fn=self._preexec(uid, nproc), close_fds=True, env=_BWRAP_ENV,
                pass_fds=tuple(fd for fd in (filt_r, stat_w, *pass_fds) if fd is not None))
        finally:
            os.close(stat_w)
            if filt_r is not None:
                os.close(filt_r)
        # the status pipe stays open until bwrap is reaped: it writes its exit code there last
        return _Jail(proc, _init_pidfd(stat_r, proc.pid), stat_r)

    def _end(self, jail: "_Jail", deadline: float) -> tuple[int, bool]:
        """Wait for a jail until ``deadline``; then kill its init, which takes every process
        of the jail with it, and reap bwrap (which exits only after the init is reaped, so
        nothing of the jail runs once this returns). (return code, timed out)."""
        timed_out = False
        try:
            jail.proc.wait(timeout=max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            timed_out = True
        jail.kill()
        rc = jail.proc.wait()
        jail.close()
        return rc, timed_out

    def run(self, code: str, stdin: str = "") -> Result:
        """Run ``code`` as ``/work/main.py`` with ``stdin``; never raises for what it does."""
        lim = self.limits
        start = time.monotonic()
        host = Path(tempfile.mkdtemp(prefix="arl-sbx-"))
        try:
            prog = _write(host, "main.py", code)
            _write(host, "stdin", stdin)
            with open(host / "stdin", "rb") as fin, open(host / "stdout", "wb") as fout, \
                    open(host / "stderr", "wb") as ferr:
                try:
                    jail = self._spawn(prog, fin, fout, ferr)
                except OSError as exc:
                    return Result("sandbox_error", None, "", "", 0.0, f"could not start bwrap: {exc}")
                rc, timed_out = self._end(jail, start + lim.wall_s)
            return _outcome(host, rc, timed_out, time.monotonic() - start, lim)
        finally:
            shutil.rmtree(host, ignore_errors=True)

    def run_paired(self, program: str, stdin: str, peer: str) -> Result:
        """Run ``program`` in one jail and ``peer`` in another, joined only by two pipes:
        ``program`` gets ``main.py <write fd> <read fd>`` to talk to the peer and ``stdin``;
        the peer gets the pipes as its stdin and stdout and nothing else. The result is
        ``program``'s; the peer's jail is killed before it is read. Used for function tests:
        the harness and the tests in one jail, the answer in the other, so no process of
        the answer can see, signal or read a process that holds the tests, the nonce or
        the verdict's channel (they are in another PID namespace)."""
        lim = self.limits
        start = time.monotonic()
        host = Path(tempfile.mkdtemp(prefix="arl-sbx-"))
        jails: list[_Jail] = []
        req_r, req_w = os.pipe()
        rep_r, rep_w = os.pipe()
        try:
            prog = _write(host, "main.py", program)
            peer_prog = _write(host, "peer.py", peer)
            _write(host, "stdin", stdin)
            with open(host / "stdin", "rb") as fin, open(host / "stdout", "wb") as fout, \
                    open(host / "stderr", "wb") as ferr, open(os.devnull, "wb") as null:
                try:
                    jails.append(self._spawn(peer_prog, req_r, rep_w, null))
                    for fd in (req_r, rep_w):
                        os.close(fd)
                    req_r = rep_w = -1
                    jails.append(self._spawn(prog, fin, fout, ferr, args=(str(req_w), str(rep_r)),
                                             pass_fds=(req_w, rep_r)))
                except OSError as exc:
                    return Result("sandbox_error", None, "", "", 0.0, f"could not start bwrap: {exc}")
                finally:
                    for fd in (req_r, rep_w, req_w, rep_r):
                        if fd >= 0:
                            os.close(fd)
                rc, timed_out = self._end(jails[1], start + lim.wall_s)
                self._end(jails[0], 0.0)
            return _outcome(host, rc, timed_out, time.monotonic() - start, lim)
        finally:
            for jail in jails:
                if jail.proc.returncode is None:
                    jail.kill()
                    jail.proc.wait()
                jail.close()
            shutil.rmtree(host, ignore_errors=True)

    # --- many programs ----------------------------------------------------------------------
    def map(self, jobs: list[tuple], workers: int | None = None) -> list[Result]:
        """Run jobs in parallel, results in order: ``(code, stdin)`` runs one jail,
        ``(program, stdin, peer)`` two joined jails (:meth:`run_paired`)."""
        if not jobs:
            return []
        workers = workers or min(len(jobs), max(2, 2 * (os.cpu_count() or 1)))
        with ThreadPoolExecutor(workers) as pool:
            return list(pool.map(lambda job: self.run(*job) if len(job) == 2 else self.run_paired(*job), jobs))


@dataclass
class _Jail:
    proc: subprocess.Popen
    init: int | None             # a pidfd of the jail's PID 1 (bwrap's reaper), None if unknown
    status: int                  # bwrap's --json-status-fd, read end

    def close(self) -> None:
        for fd in (self.init, self.status):
            if fd is not None:
                os.close(fd)
        self.init = self.status = None

    def kill(self) -> None:
        if self.init is not None:
            try:
                signal.pidfd_send_signal(self.init, signal.SIGKILL)
            except OSError:
                pass
        _kill_tree(self.proc)


def _init_pidfd(status_fd: int, bwrap_pid: int) -> int | None:
    """A pidfd of the jail's PID 1, from bwrap's first JSON status (``child-pid``), checked
    to be bwrap's own child; None when bwrap exited before it started one."""
    import json
    buf = b""
    while not buf.endswith(b"}\n"):
        chunk = os.read(status_fd, 4096)
        if not chunk:
            return None
        buf += chunk
    try:
        pid = int(json.loads(buf.split(b"}\n")[0] + b"}")["child-pid"])
        fd = os.pidfd_open(pid)
    except (ValueError, KeyError, OSError):
        return None
    try:
        status = Path(f"/proc/{pid}/status").read_text()
        ppid = int(next(ln for ln in status.splitlines() if ln.startswith("PPid:")).split()[1])
    except (OSError, StopIteration, ValueError):
        ppid = -1
    if ppid != bwrap_pid:          # gone and its pid reused: not ours to kill
        os.close(fd)
        return None
    return fd


def _write(host: Path, name: str, text: str) -> Path:
    path = host / name
    path.write_text(text)
    path.chmod(0o644)
    os.chmod(host, 0o755)
    return path


def _outcome(host: Path, rc: int, timed_out: bool, wall: float, lim: Limits) -> Result:
    """The result from the jail's files. Output past ``output_bytes`` is a failure
    (``output_limit``), never a truncation that could hide what followed."""
    size = (host / "stdout").stat().st_size
    out = _read_capped(host / "stdout", lim.output_bytes)
    err = _read_capped(host / "stderr", lim.output_bytes)
    res = _classify(rc, timed_out, out, err, wall, lim)
    if size > lim.output_bytes and res.status in ("ok", "error", "killed"):
        return Result("output_limit", rc, out, err, wall,
                      f"wrote {size} bytes to stdout, more than the {lim.output_bytes}-byte limit")
    return res


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
