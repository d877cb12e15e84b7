"""Verified responses per second for math and code: the parallel verifier against a
sequential loop over the same responses, side by side in one run.

- math: ``GuruVerifier.score_batch`` (math-verify in a pool of worker processes) against
  calling ``math_check`` one response after another in this process.
- code: ``GuruVerifier.score_batch`` (the sandbox's pool) against ``Sandbox.run`` one
  program after another; each response runs 2 stdin/stdout tests.

Half the responses are right and half wrong (wrong ones still run to the end), so both
paths do the same work. Workers: ``2 x CPU cores`` for code (it mostly waits on process
start-up), one per core for math.
"""
from __future__ import annotations

import json
import os
import time

N_MATH, N_CODE = 256, 96


def _math_items() -> list[tuple]:
    items = []
    for i in range(N_MATH):
        a, b = 3 + i % 17, 5 + i % 11
        gold = f"\\frac{{{a}}}{{{b}}}"
        resp = f"... so \\boxed{{{a / b:.6f}}}" if i % 2 else f"thus \\boxed{{\\frac{{{a + 1}}}{{{b}}}}}"
        items.append(("math__combined", resp, gold, {}))
    return items


def _code_items() -> list[tuple]:
    tests = json.dumps({"inputs": ["3 4\n", "10 20\n"], "outputs": ["7\n", "30\n"]})
    right = "```python\na, b = map(int, input().split())\nprint(a + b)\n```"
    wrong = "```python\na, b = map(int, input().split())\nprint(a * b)\n```"
    return [("codegen__taco", right if i % 2 else wrong, tests, {}) for i in range(N_CODE)]


def main() -> None:
    from plugins.rewards.guru import GuruVerifier, PLANNERS, math_check
    cores = os.cpu_count() or 1
    print(f"cores: {cores}; math responses: {N_MATH}; code responses: {N_CODE} (2 tests each)")

    # --- math -------------------------------------------------------------------------------
    items = _math_items()
    v = GuruVerifier(workers=cores)
    v.score_batch(items[:cores])                      # start the workers (imports) first
    t = time.perf_counter()
    par = v.score_batch(items)
    par_s = time.perf_counter() - t
    v.close()
    math_check("1", "1")                              # import math-verify here too
    t = time.perf_counter()
    seq = []
    for ds, resp, gold, _ in items:
        plan = PLANNERS["math"](resp, gold, {})
        seq.append(math_check(*plan.math[0])[0])
    seq_s = time.perf_counter() - t
    assert [s.acc == 1.0 for s in par] == seq, "parallel and sequential verdicts differ"
    print(f"math: parallel {N_MATH / par_s:8.1f} responses/s   sequential {N_MATH / seq_s:8.1f} "
          f"responses/s   ratio {seq_s / par_s:.2f}x   (accuracy {sum(seq) / len(seq):.2f} in both)")

    # --- code -------------------------------------------------------------------------------
    items = _code_items()
    v = GuruVerifier(workers=2 * cores)
    t = time.perf_counter()
    par = v.score_batch(items)
    par_s = time.perf_counter() - t
    sandbox = v.sandbox
    t = time.perf_counter()
    seq = []
    for ds, resp, tests, _ in items:
        plan = PLANNERS["codegen"](resp, tests, {})
        results = [sandbox.run(code, stdin) for code, stdin in plan.programs]
        seq.append(plan.finish([], results)[0])
    seq_s = time.perf_counter() - t
    v.close()
    assert [s.acc == 1.0 for s in par] == seq, "parallel and sequential verdicts differ"
    print(f"code: parallel {N_CODE / par_s:8.1f} responses/s   sequential {N_CODE / seq_s:8.1f} "
          f"responses/s   ratio {seq_s / par_s:.2f}x   (accuracy {sum(seq) / len(seq):.2f} in both)")


if __name__ == "__main__":
    main()
