"""The code sandbox against hostile programs: each scores 0 with a reason, none hangs or
crashes the caller, escapes its limits, reaches the network or changes a host file."""
import json
import os
import socket
import threading
import time
import uuid
from pathlib import Path

import pytest

from plugins.rewards.guru import GuruVerifier
from plugins.rewards.sandbox import Limits, Sandbox

LIMITS = Limits(wall_s=3.0, cpu_s=2, memory_mb=256, file_mb=1, nproc=16)
SECRET = "s3cr3t-" + uuid.uuid4().hex


@pytest.fixture(scope="module")
def sandbox():
    return Sandbox(LIMITS)


@pytest.fixture(scope="module")
def verifier():
    v = GuruVerifier(sandbox_limits=LIMITS)
    yield v
    v.close()


@pytest.fixture(scope="module")
def host_server():
    """A TCP server on the host's loopback; counts the connections it accepts."""
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen()
    srv.settimeout(0.2)
    hits, stop = [], threading.Event()

    def serve():
        while not stop.is_set():
            try:
                conn, _ = srv.accept()
                hits.append(1)
                conn.close()
            except OSError:
                pass
    t = threading.Thread(target=serve, daemon=True)
    t.start()
    yield srv.getsockname()[1], hits
    stop.set()
    t.join()
    srv.close()


def hostile_programs(port: int, outside: Path) -> dict[str, str]:
    """Each prints "ok" (what the tests expect) only if its attack worked."""
    me = os.getpid()
    return {
        "infinite_loop": "while True:\n    pass\nprint('ok')",
        "sleeper": "import time\ntime.sleep(600)\nprint('ok')",
        "fork_bomb": "import os\nwhile True:\n    try:\n        os.fork()\n    except OSError:\n        pass",
        "memory_bomb": "x = bytearray(4 * 1024**3)\nprint('ok')",
        "memory_creep": "a = []\nwhile True:\n    a.append(' ' * 10**6)",
        "huge_output": "import sys\nwhile True:\n    sys.stdout.write('ok' * 50000)",
        "write_outside": (f"open({str(outside)!r}, 'w').write('pwned')\n"
                          "open('/usr/pwned', 'w').write('x')\nprint('ok')"),
        "socket_host_loopback": (f"import socket\ns = socket.create_connection(('127.0.0.1', {port}), timeout=2)\n"
                                 "print('ok')"),
        "socket_internet": "import socket\nsocket.create_connection(('1.1.1.1', 53), timeout=2)\nprint('ok')",
        "kill_parent": (f"import os, signal\nos.kill(os.getppid(), signal.SIGKILL)\n"
                        f"os.kill({me}, signal.SIGKILL)\nprint('ok')"),
        "read_secrets": ("import os\nv = os.environ.get('ARL_TEST_SECRET', '')\n"
                         f"for p in ('/proc/1/environ', '/proc/{me}/environ', '/proc/self/environ'):\n"
                         "    try:\n        v += open(p).read()\n    except OSError:\n        pass\n"
                         f"print('ok' if {SECRET!r} in v else 'no')"),
    }


@pytest.fixture(scope="module")
def attacks(sandbox, verifier, host_server, tmp_path_factory):
    """Run every hostile program once, in parallel, through the code verifier."""
    os.environ["ARL_TEST_SECRET"] = SECRET
    port, hits = host_server
    outside = tmp_path_factory.mktemp("host") / f"escape-{uuid.uuid4().hex}"
    progs = hostile_programs(port, outside)
    tests = json.dumps({"inputs": [""], "outputs": ["ok"]})
    start = time.monotonic()
    scores = verifier.score_batch([("codegen__taco", f"```python\n{code}\n```", tests, {})
                                   for code in progs.values()])
    elapsed = time.monotonic() - start
    raw = dict(zip(progs, sandbox.map([(code, "") for code in progs.values()])))
    yield dict(zip(progs, scores)), raw, outside, hits, elapsed
    del os.environ["ARL_TEST_SECRET"]


def test_every_hostile_program_scores_zero_with_a_reason(attacks):
    scores, _, _, _, elapsed = attacks
    for name, s in scores.items():
        assert s.acc == 0.0 and s.score == 0.0, name
        assert s.reason and "pass" not in s.reason, (name, s.reason)
    # all ran in parallel, each bounded by the wall-clock limit (plus start-up slack)
    assert elapsed < 4 * LIMITS.wall_s, elapsed


def test_limits_are_reported_as_such(attacks):
    _, raw, _, _, _ = attacks
    assert raw["infinite_loop"].status == "timeout"
    assert raw["sleeper"].status == "timeout"
    assert raw["fork_bomb"].status in ("timeout", "error", "killed")
    assert raw["memory_bomb"].status == "memory"
    assert raw["memory_creep"].status == "memory"
    assert raw["huge_output"].status == "output_limit"
    assert len(raw["huge_output"].stdout) <= LIMITS.output_bytes
    for name in ("sleeper", "fork_bomb", "infinite_loop"):
        assert raw[name].wall_s < LIMITS.wall_s + 2, (name, raw[name].wall_s)


def test_no_file_outside_the_sandbox_changes(attacks):
    _, raw, outside, _, _ = attacks
    assert not outside.exists()
    assert not Path("/usr/pwned").exists()
    assert raw["write_outside"].status == "error"


def test_no_network_not_even_host_loopback(attacks):
    _, raw, _, hits, _ = attacks
    assert hits == []                          # the host server saw no connection
    assert "ok" not in raw["socket_host_loopback"].stdout
    assert "ok" not in raw["socket_internet"].stdout


def test_caller_survives_and_secrets_stay_hidden(attacks):
    _, raw, _, _, _ = attacks
    assert raw["read_secrets"].stdout.strip() == "no"
    assert SECRET not in raw["read_secrets"].stdout
    assert "ok" not in raw["kill_parent"].stdout
    os.kill(os.getpid(), 0)                     # still here


def test_no_process_outlives_its_run(attacks):
    if os.geteuid() != 0:
        pytest.skip("sandbox uids are separate only when the caller is root")
    time.sleep(0.5)
    left = []
    for p in Path("/proc").iterdir():
        if p.name.isdigit():
            try:
                status = (p / "status").read_text()
            except OSError:
                continue
            uid = int(next(line for line in status.splitlines() if line.startswith("Uid:")).split()[1])
            state = next(line for line in status.splitlines() if line.startswith("State:"))
            if 61000 <= uid < 62000 and "zombie" not in state:
                left.append((p.name, uid, state))
    assert left == []


def test_a_well_behaved_program_runs_with_stdin(sandbox):
    r = sandbox.run("import sys\nprint(sum(map(int, sys.stdin.read().split())))", "3 4 5\n")
    assert r.ok and r.stdout.strip() == "12" and r.reason == "exited normally"
    w = sandbox.run("open('scratch.txt', 'w').write('x' * 100)\nprint(len(open('scratch.txt').read()))")
    assert w.ok and w.stdout.strip() == "100"     # its own directory is writable
