"""Stops the processes a grid driver started when the driver dies, ``kill -9`` included.

A driver that starts its own local Ray (no ``$RAY_ADDRESS``) owns a process tree: Ray's GCS,
raylet, dashboard and its agents, the workers (Tune trials, verl's actors, their
subprocesses). ``ray.shutdown()`` stops it on a normal exit or Ctrl-C; a killed driver leaves
it running (its dashboard and runtime-env agents stayed alive). ``start(pid)`` launches this
module in its own session: it records the driver's descendants (pid and creation time) every
second while the driver lives, and once the driver is gone it stops every recorded process
that is still the same process: SIGTERM, then SIGKILL after a grace period.

    python -m core.watchdog <driver pid>
"""
from __future__ import annotations

import os
import subprocess
import sys
import time

POLL_S = 1.0
GRACE_S = 5.0


def start(driver_pid: int | None = None) -> subprocess.Popen:
    """Watch ``driver_pid`` (this process by default) from a process of its own session."""
    return subprocess.Popen([sys.executable, "-m", "core.watchdog", str(driver_pid or os.getpid())],
                            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)


def descendants(pid: int) -> dict[int, float]:
    """pid -> creation time of every live descendant of ``pid``."""
    import psutil
    try:
        kids = psutil.Process(pid).children(recursive=True)
    except psutil.Error:
        return {}
    out = {}
    for k in kids:
        try:
            out[k.pid] = k.create_time()
        except psutil.Error:
            pass
    return out


def stop(procs: dict[int, float], grace_s: float = GRACE_S) -> int:
    """SIGTERM, then SIGKILL, the recorded processes that are still the ones recorded."""
    import psutil
    live = []
    for pid, created in procs.items():
        try:
            p = psutil.Process(pid)
            if abs(p.create_time() - created) < 1e-3:   # not a reused pid
                p.terminate()
                live.append(p)
        except psutil.Error:
            pass
    _, alive = psutil.wait_procs(live, timeout=grace_s)
    for p in alive:
        try:
            p.kill()
        except psutil.Error:
            pass
    return len(live)


def _alive(driver) -> bool:
    import psutil
    try:
        return driver.is_running() and driver.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def watch(driver_pid: int) -> None:
    import psutil
    known: dict[int, float] = {}
    try:
        driver = psutil.Process(driver_pid)
    except psutil.Error:
        return
    me = os.getpid()
    while _alive(driver):
        known.update(descendants(driver_pid))
        time.sleep(POLL_S)
    known.pop(me, None)
    stop(known)


if __name__ == "__main__":
    watch(int(sys.argv[1]))
