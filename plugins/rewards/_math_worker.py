"""A math-verify worker process: one JSON request per stdin line, one JSON reply per line.

Request ``[[[gold, pred], ...], timeout_s]``; reply ``[[ok, reason], ...]`` in order. Started by
``plugins.rewards.guru.MathPool`` as ``python -m plugins.rewards._math_worker``; the check
runs in this process's main thread, where math-verify's ``signal.alarm`` timeouts work.
"""
from __future__ import annotations

import json
import sys


def main() -> None:
    from plugins.rewards.guru import math_check
    for line in sys.stdin:
        pairs, timeout_s = json.loads(line)
        replies = []
        for gold, pred in pairs:
            try:
                replies.append(list(math_check(gold, pred, timeout_s)))
            except Exception as exc:   # math-verify raising is a verdict, not a worker crash
                replies.append([False, f"math-verify error: {type(exc).__name__}: {exc}"[:300]])
        sys.stdout.write(json.dumps(replies) + "\n")
        sys.stdout.flush()

if __name__ == "__main__":
    main()
