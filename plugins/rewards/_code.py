"""Code answers and their tests, for the Guru codegen verifier (``guru.plan_codegen``): the
answer's code block, stdout comparison, and the trusted harness (``_harness.py``) that runs
function tests so nothing the answer does can make a failing answer pass (README, "A code
reward that cannot be cheated")."""
from __future__ import annotations

import json
import math
import re
import secrets
import threading
from pathlib import Path

from plugins.rewards._answers import fenced_blocks

HARNESS = Path(__file__).with_name("_harness.py")


_YESNO = {"yes", "no"}


def same_output(out: str, expected: str) -> bool:
    """stdout against the expected output: line by line after trimming, else token by
    token with numbers within 1e-6 and ``yes``/``no`` in any case."""
    a = [line.rstrip() for line in out.strip().splitlines()]
    b = [line.rstrip() for line in str(expected).strip().splitlines()]
    if a == b:
        return True
    ta, tb = " ".join(a).split(), " ".join(b).split()
    if len(ta) != len(tb):
        return False
    for x, y in zip(ta, tb):
        if x == y or (x.lower() == y.lower() and y.lower() in _YESNO):
            continue
        try:
            if not math.isclose(float(x), float(y), rel_tol=1e-6, abs_tol=1e-6):
                return False
        except ValueError:
            return False
    return True


def names_of(code: str) -> tuple[set, set] | None:
    """(names a block binds, names it reads) or None when it does not parse."""
    import ast
    import builtins
    try:
        tree = ast.parse(code)
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return None
    bound, read = set(), set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Name):
            (read if isinstance(node.ctx, ast.Load) else bound).add(node.id)
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            bound.add(node.name)
        elif isinstance(node, ast.arg):
            bound.add(node.arg)
        elif isinstance(node, ast.alias):
            bound.add((node.asname or node.name).split(".")[0])
    return bound, read - bound - set(dir(builtins))


def answer_code(text: str) -> str | None:
    """The last ```` ```python ```` (``py``, ``python3``) block, else the last block
    without a language. When it uses names that only earlier Python blocks define (a
    helper written in its own block), those blocks come first, as Reasoning360 joins
    blocks; an earlier block that defines nothing it needs (a first attempt) stays out."""
    blocks = fenced_blocks(text)
    for langs in (("python", "py", "python3"), ("",)):
        chosen = [body for _, lang, body in blocks if lang in langs]
        if chosen:
            last, earlier = chosen[-1], chosen[:-1]
            names = names_of(last)
            if not names or not names[1] or not earlier:
                return last
            needed = []
            for body in earlier:
                other = names_of(body)
                if other and other[0] & names[1]:
                    needed.append(body)
            return "\n\n".join(needed + [last]) if needed else last
    return None


_HARNESS_PROGRAMS: dict[str, str] = {}
_HARNESS_LOCK = threading.Lock()


def harness_program(python: str | None = None) -> str:
    """The harness as ``/work/main.py``: its code object compiled once by the sandbox's
    own Python and embedded with ``marshal`` (compiling the source in every jail cost
    ~8 ms a run); the plain source when that Python cannot compile it."""
    import subprocess
    from plugins.rewards.sandbox import default_python
    python = python or default_python()
    with _HARNESS_LOCK:
        if python not in _HARNESS_PROGRAMS:
            src = HARNESS.read_text()
            program = src
            try:
                done = subprocess.run(
                    [python, "-I", "-B", "-c", "import marshal, sys; sys.stdout.write(marshal.dumps("
                     "compile(sys.stdin.read(), '_harness.py', 'exec')).hex())"],
                    input=src, capture_output=True, text=True, timeout=60)
                if done.returncode == 0 and re.fullmatch(r"[0-9a-f]+", done.stdout.strip()):
                    program = ("import marshal\nexec(marshal.loads(bytes.fromhex(\n'"
                               + done.stdout.strip() + "')))\n")
            except (OSError, subprocess.SubprocessError):
                pass
            _HARNESS_PROGRAMS[python] = program
        return _HARNESS_PROGRAMS[python]


def functional_program(code: str, tests: str, prefix: str = "") -> tuple[str, str, str, str]:
    """(harness program, its stdin, the answer's program, nonce) for ``Sandbox.run_paired``:
    the harness and the tests in one jail with the nonce on stdin, the answer in another
    (the same program, started without descriptors to a peer, is the answer's side)."""
    nonce = secrets.token_hex(16)
    payload = json.dumps({"nonce": nonce, "solution": code, "tests": tests, "prefix": prefix})
    program = harness_program()
    return program, payload, program, nonce


def harness_verdict(result, nonce: str) -> tuple[bool, str]:
    """Pass only when the harness exited cleanly and its whole output, within the read
    limit, is exactly one line: ``<nonce> PASS``. Anything more or else fails."""
    lines = result.stdout.splitlines()
    if result.status == "output_limit":
        return False, f"the test harness wrote too much: {result.reason}"
    if len(lines) == 1 and lines[0] == f"{nonce} PASS" and result.stdout.endswith("\n") and result.ok:
        return True, "tests pass"
    if len(lines) == 1 and lines[0].startswith(f"{nonce} FAIL"):
        return False, lines[0][len(nonce) + 5:].strip() or "tests fail"
    if len(lines) > 1:
        return False, f"the test harness wrote {len(lines)} lines, not one verdict"
    return False, f"the test harness did not finish: {result.reason}"
