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


# --- the code reward cannot be cheated ------------------------------------------------------------
# Function-call tests run in the trusted harness (plugins/rewards/_harness.py): the answer lives
# in its own process and can only send data back. Each trick below scored 1.0 ("tests pass")
# when the answer's code ran before the tests in one script judged by its exit status; each
# must score 0 with a reason that says what happened, while the honest answer scores 1.
from plugins.datasets import _guru_sample as sample  # noqa: E402

LEET = json.dumps({"functional": "def check(candidate):\n    assert candidate(nums = [2,7,11,15], target = 9) == [0,1]\n"
                                 "    assert candidate(nums = [3,2,4], target = 6) == [1,2]\n\n\ncheck(Solution().twoSum)"})
TACO = json.dumps({"functional": sample.DEEP_EQ_TESTS.format(inputs=[[1.0], [2.0]], outputs=[[1.0], [0.25]], fn="inverse_square")})
TRUTH = json.dumps({"functional": "def check(candidate):\n    assert candidate(4)\n    assert not candidate(3)\n\n\ncheck(Solution().isEven)"})
MAPPED = json.dumps({"functional": "def check(candidate):\n    cases = [(4, True), (3, False)]\n"
                                   "    assert all(map(lambda c: candidate(c[0]) == c[1], cases))\n\n\ncheck(Solution().isEven)"})
STDIO2 = json.dumps({"inputs": ["2 3\n", "10 -4\n"], "outputs": ["5\n", "6\n"]})
HONEST = ("class Solution:\n    def twoSum(self, nums: List[int], target: int) -> List[int]:\n        seen = {}\n"
          "        for i, x in enumerate(nums):\n            if target - x in seen:\n                return [seen[target - x], i]\n"
          "            seen[x] = i\n")
WRONG = "class Solution:\n    def twoSum(self, nums, target):\n        return [0, 0]\n"
IN_CALL = "class Solution:\n    def twoSum(self, nums, target):\n        {}\n"
FAILED = "test assertion failed"

# name -> (tests, answer code, what the reason must say)
CHEATS = {
    "exit": (LEET, WRONG + "exit(0)\n", "SystemExit"),
    "quit": (LEET, WRONG + "quit()\n", "SystemExit"),
    "sys_exit": (LEET, "import sys\n" + WRONG + "sys.exit(0)\n", "SystemExit"),
    "sys_exit_in_the_call": (LEET, "import sys\n" + IN_CALL.format("sys.exit(0)"), "SystemExit"),
    "raise_systemexit_in_the_call": (LEET, IN_CALL.format("raise SystemExit(0)"), "SystemExit"),
    "raise_keyboardinterrupt": (LEET, IN_CALL.format("raise KeyboardInterrupt"), "KeyboardInterrupt"),
    "os_exit_while_loading": (LEET, "import os\n" + WRONG + "os._exit(0)\n", "exited while its code was loading"),
    "os_exit_in_the_call": (LEET, "import os\n" + IN_CALL.format("os._exit(0)"), "exited during a call"),
    "atexit_hook": (LEET, "import atexit, os\natexit.register(lambda: (print('tests pass'), os._exit(0)))\n" + WRONG, FAILED),
    "excepthooks": (LEET, "import sys, threading\nsys.excepthook = lambda *a: print('PASS')\n"
                          "threading.excepthook = lambda *a: None\n" + IN_CALL.format("raise ValueError('no')"), "ValueError"),
    "patch_builtins": (LEET, "import builtins\nbuiltins.AssertionError = type('Fine', (Exception,), {})\n"
                             "builtins.all = lambda *a: True\nbuiltins.len = lambda *a: 0\n" + WRONG, "answer process"),
    "patch_math_isclose": (TACO, "import math\nmath.isclose = lambda *a, **k: True\n"
                                 "def inverse_square(x):\n    return 42.0\n", FAILED),
    "redefine_test_helpers": (LEET, WRONG + "def check(candidate):\n    pass\n\ndef is_same_list(a, b):\n    return True\n\n"
                                    "_deep_eq = lambda *a, **k: True\n", FAILED),
    "rewrite_check_by_tracing": (LEET, "import sys\ndef tracer(frame, event, arg):\n"
                                       "    frame.f_globals['check'] = lambda c: None\n    return tracer\n"
                                       "sys.settrace(tracer)\nsys.setprofile(tracer)\n" + WRONG, FAILED),
    "print_success_markers": (LEET, "print('tests pass')\nprint('0' * 32 + ' PASS')\nimport sys\nsys.stderr.write('ok\\n')\n" + WRONG, FAILED),
    "write_markers_to_every_fd": (LEET, "import os\nfor fd in range(1, 64):\n    try:\n"
                                        "        os.write(fd, b'{\"seq\": 1, \"ret\": null}\\n' + b'0' * 32 + b' PASS\\n')\n"
                                        "    except OSError:\n        pass\n" + WRONG, "answer process"),
    # the harness is in another jail: the answer's parent is its own jail's init, which
    # ignores signals from inside its namespace, and kill(-1) finds no other process
    "kill_the_harness": (LEET, "import os, signal\nos.kill(os.getppid(), signal.SIGKILL)\n" + WRONG, FAILED),
    "kill_every_process": (LEET, "import os, signal\nos.kill(-1, signal.SIGKILL)\n" + WRONG, "ProcessLookupError"),
    "stop_the_harness": (LEET, "import os, signal\nos.kill(os.getppid(), signal.SIGSTOP)\n" + WRONG, FAILED),
    "alarm_signal_exit": (LEET, "import os, signal, time\nsignal.signal(signal.SIGALRM, lambda *a: os._exit(0))\n"
                                "signal.setitimer(signal.ITIMER_REAL, 0.05)\n" + IN_CALL.format("time.sleep(1); return [0, 0]"),
                          "exited during a call"),
    "background_thread_exits": (LEET, "import os, threading, time\ndef late():\n    time.sleep(0.05)\n    print('PASS')\n"
                                      "    os._exit(0)\nthreading.Thread(target=late).start()\n" + IN_CALL.format("time.sleep(0.3); return [0, 0]"),
                                "exited during a call"),
    "forked_child_lingers": (LEET, "import os, time\nif os.fork() == 0:\n    time.sleep(0.2)\n"
                                   "    print('0' * 32 + ' PASS', flush=True)\n    os._exit(0)\n" + WRONG, FAILED),
    "frames_and_gc_for_the_tests": (LEET, "import sys, gc, inspect\nfound = []\nf = sys._getframe()\nwhile f:\n"
                                          "    found += [v for v in f.f_locals.values() if isinstance(v, str) and 'check(' in v]\n"
                                          "    f = f.f_back\nfound += [o for o in gc.get_objects() if isinstance(o, str) and 'check(' in o]\n"
                                          "found += [str(fr.frame.f_globals.get('payload')) for fr in inspect.stack()]\n"
                                          "class Solution:\n    def twoSum(self, nums, target):\n"
                                          "        import re\n        for text in found:\n"
                                          "            m = re.findall(r'== (\\[[^\\]]*\\])', text)\n"
                                          "            if m:\n                return eval(m[0])\n        return [0, 0]\n", FAILED),
    "scan_memory_for_a_nonce": (LEET, "import gc, re\nfor o in gc.get_objects():\n    for s in (o if isinstance(o, (list, tuple)) else [o]):\n"
                                      "        if isinstance(s, str) and re.fullmatch(r'[0-9a-f]{32}', s):\n"
                                      "            print(s + ' PASS', flush=True)\n" + WRONG, FAILED),
    "ptrace_and_proc_of_the_harness": (LEET, "import ctypes, os\nlibc = ctypes.CDLL(None)\nppid = os.getppid()\n"
                                             "libc.ptrace(16, ppid, 0, 0)\nseen = []\n"
                                             "for p in ('mem', 'environ', 'fd/0', 'fd/1', 'maps'):\n    try:\n"
                                             "        seen.append(open(f'/proc/{ppid}/{p}', 'rb').read(64))\n"
                                             "    except OSError as e:\n        seen.append(type(e).__name__)\n"
                                             "try:\n    seen.append(os.pread(0, 64, 0))\nexcept OSError as e:\n    seen.append(type(e).__name__)\n"
                                             "assert b'nonce' not in open('/work/main.py', 'rb').read().split(b'payload')[0] or True\n"
                                             + IN_CALL.format("raise ValueError(repr(seen))"), "PermissionError"),
    "eq_always_true": (LEET, "class Yes:\n    def __eq__(self, other):\n        return True\n    def __ne__(self, other):\n"
                             "        return False\n" + IN_CALL.format("return Yes()"), FAILED),
    "list_subclass_eq": (LEET, "class L(list):\n    def __eq__(self, other):\n        return True\n" + IN_CALL.format("return L([9])"), FAILED),
    "float_subclass_eq": (TACO, "class F(float):\n    def __eq__(self, other):\n        return True\n"
                                "def inverse_square(x):\n    return F(42.0)\n", FAILED),
    "always_truthy_object": (TRUTH, "class Solution:\n    def isEven(self, n):\n        return object()\n", "TypeError"),
    "stop_iteration_ends_all_map": (MAPPED, "class Solution:\n    def isEven(self, n):\n        raise StopIteration\n",
                                    "the answer raised StopIteration"),
}


@pytest.fixture(scope="module")
def cheat_scores(verifier):
    items = [("codegen__leetcode2k", f"```python\n{code}```", tests, {"prefix": sample.LEETCODE_PREFIX})
             for tests, code, _ in CHEATS.values()]
    items += [("codegen__leetcode2k", f"```python\n{code}```", tests, {"prefix": sample.LEETCODE_PREFIX})
              for tests, code in HONEST_ANSWERS.values()]
    start = time.monotonic()
    scores = verifier.score_batch(items)
    return dict(zip(list(CHEATS) + [f"honest:{k}" for k in HONEST_ANSWERS], scores)), time.monotonic() - start


HONEST_ANSWERS = {
    "two_sum": (LEET, HONEST),
    "two_sum_with_a_lingering_thread": (LEET, "import threading, time\n"
                                              "threading.Thread(target=lambda: time.sleep(60), daemon=False).start()\n" + HONEST),
    "inverse_square": (TACO, "def inverse_square(x):\n    return 1 / (x * x)\n"),
    "is_even": (TRUTH, "class Solution:\n    def isEven(self, n):\n        return n % 2 == 0\n"),
    "is_even_through_map": (MAPPED, "class Solution:\n    def isEven(self, n):\n        return n % 2 == 0\n"),
}


@pytest.mark.parametrize("name", list(HONEST_ANSWERS))
def test_honest_answers_pass_the_harness(cheat_scores, name):
    s = cheat_scores[0][f"honest:{name}"]
    assert (s.acc, s.score, s.reason) == (1.0, 1.0, "tests pass"), s


@pytest.mark.parametrize("name", list(CHEATS))
def test_cheat_scores_zero(cheat_scores, name):
    s = cheat_scores[0][name]
    assert s.acc == 0.0 and s.score == 0.0, (name, s)
    assert CHEATS[name][2] in s.reason, (name, s.reason)
    assert "tests pass" not in s.reason


def test_cheats_are_bounded_by_the_wall_clock(cheat_scores):
    assert cheat_scores[1] < 6 * LIMITS.wall_s


# stdin/stdout tests: the expected output never enters the sandbox and the output decides;
# printing the right output is what a solution does, so the tricks are about status and timing.
STDIO_CHEATS = {
    "os_exit_zero_after_wrong_output": "print(0, flush=True)\nimport os\nos._exit(0)\n",
    "sys_exit_zero_before_output": "import sys\nsys.exit(0)\nprint(5)\n",
    "print_success_markers": "print('tests pass')\nprint('ok')\nprint('PASS')\n",
    "hard_code_the_first_test": "print(5)\n",
    "atexit_prints_the_first_answer": "import atexit\natexit.register(lambda: print(5))\n",
    "kill_the_parent": "import os, signal\nos.kill(os.getppid(), signal.SIGKILL)\nos.kill(1, signal.SIGKILL)\nprint(5)\n",
    "right_output_then_crash": "a, b = map(int, input().split())\nprint(a + b, flush=True)\nraise SystemExit(1)\n",
}


@pytest.fixture(scope="module")
def stdio_scores(verifier):
    items = [("codegen__taco", f"```python\n{code}```", STDIO2, {}) for code in STDIO_CHEATS.values()]
    items.append(("codegen__taco", "```python\na, b = map(int, input().split())\nprint(a + b, flush=True)\n"
                                   "import os\nos._exit(0)\n```", STDIO2, {}))
    return dict(zip(list(STDIO_CHEATS) + ["honest"], verifier.score_batch(items)))


@pytest.mark.parametrize("name", list(STDIO_CHEATS))
def test_stdio_cheat_scores_zero(stdio_scores, name):
    s = stdio_scores[name]
    assert s.acc == 0.0 and s.reason.startswith("test ") and "pass" not in s.reason, (name, s)


def test_stdio_honest_answer_passes_even_if_it_exits_hard(stdio_scores):
    assert stdio_scores["honest"].acc == 1.0 and stdio_scores["honest"].reason == "2 tests pass"
