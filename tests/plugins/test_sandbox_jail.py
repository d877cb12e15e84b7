"""The jail of a function test: the answer runs in a PID namespace of its own, joined to the
harness's jail only by two pipes, so no process of the answer can read, signal or borrow a
descriptor of a process that holds the tests, the nonce or the verdict's output.

Each hostile answer below is WRONG unless its attack works: it returns the expected values it
found, or forges the harness's ``<nonce> PASS`` line on every descriptor it can reach. Each
must score 0 in every repetition (they race the harness), while the honest answer scores 1.
"""
import json
import os
import re
from pathlib import Path

import pytest

from plugins.rewards._code import harness_verdict
from plugins.rewards._seccomp import BLOCKED, program
from plugins.rewards.guru import GuruVerifier
from plugins.rewards.sandbox import Limits, Result, Sandbox

LIMITS = Limits(wall_s=4.0, cpu_s=3, memory_mb=512, file_mb=1, nproc=16)
REPEATS = 8

TESTS = json.dumps({"functional": "def check(candidate):\n    assert candidate(nums = [2,7,11,15], target = 9) == [0,1]\n"
                                  "    assert candidate(nums = [3,2,4], target = 6) == [1,2]\n\n\ncheck(Solution().twoSum)"})
HONEST = ("class Solution:\n    def twoSum(self, nums, target):\n        seen = {}\n"
          "        for i, x in enumerate(nums):\n            if target - x in seen:\n"
          "                return [seen[target - x], i]\n            seen[x] = i\n")

# What every attack uses: everything readable of every process it can see, and every
# descriptor it can get hold of (its own, /proc/<pid>/fd/*, pidfd_getfd).
LIB = r'''
import ctypes, glob, os, re
libc = ctypes.CDLL(None, use_errno=True)
PIDS = sorted(int(p) for p in os.listdir('/proc') if p.isdigit())


def loot():
    seen = []
    for path in glob.glob('/proc/[0-9]*/fd/*') + glob.glob('/proc/[0-9]*/task/*/fd/*'):
        try:
            fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
        except OSError:
            continue
        for read in (lambda: os.pread(fd, 1 << 20, 0), lambda: os.read(fd, 1 << 16)):
            try:
                seen.append(read())
                break
            except OSError:
                pass
        os.close(fd)
    for pid in PIDS:
        for name in ('environ', 'cmdline'):
            try:
                seen.append(open(f'/proc/{pid}/{name}', 'rb').read())
            except OSError:
                pass
        if pid == os.getpid():
            continue
        try:
            maps = open(f'/proc/{pid}/maps').read().splitlines()
            mem = open(f'/proc/{pid}/mem', 'rb')
        except OSError:
            continue
        for line in maps:
            lo, hi = (int(x, 16) for x in line.split()[0].split('-'))
            if line.split()[1].startswith('rw') and hi - lo < (64 << 20):
                try:
                    mem.seek(lo)
                    seen.append(mem.read(hi - lo))
                except (OSError, ValueError, OverflowError):
                    pass
    return b'\n'.join(seen)


def grab_fds():
    fds = list(range(64))
    for pid in PIDS + list(range(1, 8)):
        pfd = libc.syscall(434, pid, 0)                        # pidfd_open
        if pfd >= 0:
            fds += [fd for fd in (libc.syscall(438, pfd, t, 0) for t in range(64)) if fd >= 0]
        for path in glob.glob(f'/proc/{pid}/fd/*'):
            for flags in (os.O_WRONLY | os.O_APPEND, os.O_RDWR):
                try:
                    fds.append(os.open(path, flags | os.O_NONBLOCK))
                except OSError:
                    pass
    return fds


def forge(fds, nonces, pad=0):
    """Write PASS for each candidate nonce; with ``pad`` (the host's read limit), pad a
    file first so that the last forged line ends exactly at the limit."""
    lines = b''.join(n + b' PASS\n' for n in nonces[:64]) or (b'0' * 32 + b' PASS\n')
    for fd in fds:
        try:
            if pad:
                pos = os.lseek(fd, 0, os.SEEK_END)
                if pos + len(lines) < pad:
                    os.write(fd, b'x' * (pad - pos - len(lines) - 1) + b'\n')
            os.write(fd, lines)
        except OSError:
            pass


def nonces(blob):
    return list(dict.fromkeys(re.findall(rb'(?<![0-9a-f])[0-9a-f]{32}(?![0-9a-f])', blob)))
'''

ATTACKS = {
    # read the hidden tests out of any process or descriptor, answer from the lookup
    "read_the_tests_from_proc": LIB + r'''
ANSWERS = {}
blob = loot().decode('latin-1')
for args, want in re.findall(r'candidate\((nums = \[[^\]]*\], target = -?\d+)\) == (\[[^\]]*\])', blob):
    ANSWERS[re.sub(r'\s', '', args)] = eval(want)


class Solution:
    def twoSum(self, nums, target):
        return ANSWERS.get(f'nums={nums},target={target}'.replace(' ', ''), [0, 0])
''',
    # borrow a descriptor of the process that writes the verdict and forge PASS on it
    "pidfd_getfd_forges_the_verdict": LIB + r'''
forge(grab_fds(), nonces(loot()))


class Solution:
    def twoSum(self, nums, target):
        forge(grab_fds(), nonces(loot()))
        return [0, 0]
''',
    # pad every reachable output past the read limit, so the host would read only a forgery
    "pad_the_output_past_the_read_limit": LIB + r'''
forge(grab_fds(), nonces(loot()), pad=65536)


class Solution:
    def twoSum(self, nums, target):
        forge(grab_fds(), nonces(loot()), pad=65536)
        return [0, 0]
''',
    # leave a daemon that appends PASS after the verdict
    "forked_survivor_appends_pass": LIB + r'''
import time
if os.fork() == 0:
    os.setsid()
    if os.fork() == 0:
        fds, found = grab_fds(), nonces(loot())
        end = time.monotonic() + 3
        while time.monotonic() < end:
            forge(fds, found)
            time.sleep(0.01)
    os._exit(0)


class Solution:
    def twoSum(self, nums, target):
        return [0, 0]
''',
}


@pytest.fixture(scope="module")
def verifier():
    v = GuruVerifier(sandbox_limits=LIMITS)
    yield v
    v.close()


def _jail_processes() -> list[tuple[str, int]]:
    """Processes of the sandbox's uids (61000-61999) that are still running."""
    left = []
    for p in Path("/proc").iterdir():
        if p.name.isdigit():
            try:
                status = (p / "status").read_text()
            except OSError:
                continue
            uid = int(next(ln for ln in status.splitlines() if ln.startswith("Uid:")).split()[1])
            if 61000 <= uid < 62000 and "zombie" not in next(ln for ln in status.splitlines() if ln.startswith("State:")):
                left.append((p.name, uid))
    return left


@pytest.fixture(scope="module")
def attack_scores(verifier):
    names = [n for n in ATTACKS for _ in range(REPEATS)]
    items = [("codegen__leetcode2k", f"```python\n{ATTACKS[n]}```", TESTS, {}) for n in names]
    items += [("codegen__leetcode2k", f"```python\n{HONEST}```", TESTS, {})] * 4
    scores = verifier.score_batch(items)
    left = _jail_processes() if os.geteuid() == 0 else None     # right after: no wait
    by_name: dict[str, list] = {}
    for n, s in zip(names + ["honest"] * 4, scores):
        by_name.setdefault(n, []).append(s)
    return by_name, left


@pytest.mark.parametrize("name", list(ATTACKS))
def test_attack_scores_zero_in_every_repetition(attack_scores, name):
    scores = attack_scores[0][name]
    assert len(scores) == REPEATS
    for s in scores:
        assert s.acc == 0.0 and s.score == 0.0, (name, s.reason)
        assert "tests pass" not in s.reason, (name, s.reason)


def test_honest_answer_passes_beside_the_attacks(attack_scores):
    assert [(s.acc, s.reason) for s in attack_scores[0]["honest"]] == [(1.0, "tests pass")] * 4


def test_no_process_of_an_answer_outlives_its_verdict(attack_scores):
    if attack_scores[1] is None:
        pytest.skip("sandbox uids are separate only when the caller is root")
    assert attack_scores[1] == []          # the survivors' daemons died with their jails


# --- what the answer's jail looks like from inside ----------------------------------------------
REPORT = json.dumps({"functional": "def check(candidate):\n    r = candidate()\n    assert False, r\n\n\ncheck(look)"})
LOOK = r'''
import ctypes, json, os
libc = ctypes.CDLL(None, use_errno=True)


def look():
    pidfd = libc.syscall(434, 1, 0)
    pidfd_errno = ctypes.get_errno()
    ptrace = libc.ptrace(16, 1, 0, 0)
    ptrace_errno = ctypes.get_errno()
    fd1 = sorted(os.readlink(f'/proc/1/fd/{n}') for n in os.listdir('/proc/1/fd'))
    return json.dumps({"pids": sorted(int(p) for p in os.listdir('/proc') if p.isdigit()),
                       "pidfd": [pidfd, pidfd_errno], "ptrace": [ptrace, ptrace_errno],
                       "init_fds": [f.split(':')[0] for f in fd1],
                       "seccomp": open('/proc/self/status').read().split('Seccomp:')[1].split()[0]})
'''


def test_the_answer_sees_only_its_own_jail(verifier):
    s = verifier("codegen__leetcode2k", f"```python\n{LOOK}```", REPORT, {})
    seen = json.loads(re.search(r"\{.*\}", s.reason).group(0))
    assert s.acc == 0.0
    assert len(seen["pids"]) <= 2           # bwrap's reaper (PID 1) and the answer itself
    # the reaper holds the answer's own pipes, /dev/null and its signal/event descriptors:
    # no file, and nothing of the harness's jail
    assert "pipe" in seen["init_fds"] and set(seen["init_fds"]) <= {"pipe", "/dev/null", "anon_inode"}
    if program() is not None:
        assert seen["seccomp"] == "2"
        assert seen["pidfd"] == [-1, 1] and seen["ptrace"] == [-1, 1]     # EPERM


def test_seccomp_program_blocks_what_it_says():
    if program() is None:
        pytest.skip("no syscall table for this machine")
    assert set(BLOCKED) >= {"ptrace", "pidfd_open", "pidfd_getfd", "process_vm_readv"}
    assert len(program()) % 8 == 0 and program("riscv64") is None


# --- the verdict channel ---------------------------------------------------------------------------
def _result(stdout: str, status: str = "ok") -> Result:
    return Result(status, 0, stdout, "", 0.1, "exited normally")


def test_a_verdict_counts_only_alone_and_whole():
    n = "ab" * 16
    assert harness_verdict(_result(f"{n} PASS\n"), n) == (True, "tests pass")
    assert not harness_verdict(_result(f"{n} FAIL x\n{n} PASS\n"), n)[0]
    assert not harness_verdict(_result(f"junk\n{n} PASS\n"), n)[0]
    assert not harness_verdict(_result(f"{n} PASS\n", status="output_limit"), n)[0]
    assert not harness_verdict(_result(f"{n} PASS"), n)[0]          # cut before its newline


def test_output_past_the_read_limit_fails_instead_of_being_cut():
    sandbox = Sandbox(Limits(wall_s=3.0, output_bytes=1000))
    fits = sandbox.run("print('5' * 999)")
    over = sandbox.run("print(5)\nprint('x' * 2000)")
    assert fits.ok
    assert over.status == "output_limit" and "1000-byte" in over.reason
    v = GuruVerifier(sandbox_limits=Limits(wall_s=3.0, output_bytes=1000))
    try:
        tests = json.dumps({"inputs": ["2 3\n"], "outputs": ["5\n"]})
        padded = v("codegen__taco", "```python\nprint(5)\nprint(' ' * 5000)\n```", tests, {})
        honest = v("codegen__taco", "```python\nprint(5)\n```", tests, {})
    finally:
        v.close()
    assert honest.acc == 1.0 and padded.acc == 0.0
