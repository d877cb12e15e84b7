"""A small folder in Guru-RL-92k's exact layout and schema, for trying the Guru path offline
(no hub access) and for the tests: every domain, train and online_eval files, pass-rate
columns on some files and not on others, and optionally the compressed variant.

    python -m plugins.datasets._guru_sample /tmp/guru_sample [--compressed]
"""
from __future__ import annotations

import argparse
import base64
import json
import random
import zlib
from pathlib import Path


def _msg(text: str) -> list[dict]:
    return [{"role": "user", "content": text}]


def _math(rng: random.Random, i: int) -> tuple[str, str]:
    a, b = rng.randrange(2, 40), rng.randrange(2, 40)
    return f"Compute {a}*{b}. Put the answer in \\boxed{{}}.", str(a * b)


def _codegen(rng: random.Random, i: int) -> tuple[str, str]:
    k = rng.randrange(1, 9)
    xs = [rng.randrange(0, 50) for _ in range(2)]
    tests = {"inputs": [f"{x}\n" for x in xs], "outputs": [f"{x + k}\n" for x in xs]}
    return (f"Read an integer n from stdin and print n+{k}. Answer in a ```python``` block.",
            json.dumps(tests))


def _logic(rng: random.Random, i: int) -> tuple[str, object]:
    birds = rng.sample(["crow", "owl", "robin", "wren", "jay"], 3)
    return (f"Order these birds alphabetically: {', '.join(birds)}. Answer as a list in <answer></answer>.",
            sorted(birds))


def _simulation(rng: random.Random, i: int) -> tuple[str, str]:
    x = rng.randrange(1, 20)
    return (f"What does f({x}) return for def f(x): return [x, x * 2]? Answer with JSON "
            f"{{\"output\": ...}} in <answer></answer>.", json.dumps({"output": [x, 2 * x]}))


def _table(rng: random.Random, i: int) -> tuple[str, str]:
    a, b = rng.randrange(10, 99), rng.randrange(10, 99)
    return f"| year | sales |\n| 2020 | {a} |\n| 2021 | {b} |\nTotal sales? Answer in \\boxed{{}}.", str(a + b)


def _stem(rng: random.Random, i: int) -> tuple[str, str]:
    v, t = rng.randrange(2, 30), rng.randrange(2, 60)
    return f"A cart moves at {v} m/s for {t} s. How many metres does it travel? Answer in \\boxed{{}}.", str(v * t)


MAKERS = {"math": ("combined", _math), "codegen": ("taco", _codegen), "logic": ("ordering_puzzle", _logic),
          "simulation": ("codeio", _simulation), "table": ("hitab", _table), "stem": ("web", _stem)}
WITH_PASS_RATES = ("math", "logic", "table")   # the others must be graded by the policy


def rows(domain: str, n: int, seed: int, compressed: bool = False) -> list[dict]:
    source, make = MAKERS[domain]
    rng = random.Random(f"{domain}/{seed}")
    out = []
    for i in range(n):
        prompt, gt = make(rng, i)
        rm = {"style": "rule", "ground_truth": gt}
        extra = {"index": i, "split": "train", "original_source": source}
        row = {"data_source": f"{domain}__{source}", "prompt": _msg(prompt), "ability": domain,
               "reward_model": rm, "extra_info": extra}
        if domain in WITH_PASS_RATES:
            row["qwen2.5_7b_pass_rate"] = round(rng.random(), 3)
            row["qwen3_30b_pass_rate"] = round(rng.random(), 3)
        if compressed:
            row["reward_model"] = _pack(rm) if i % 2 else json.dumps(rm)
            row["extra_info"] = _pack(extra) if i % 2 else json.dumps(extra)
        elif domain == "logic":   # Guru stores list answers as arrays; keep that shape
            row["reward_model"] = {"style": "rule", "ground_truth": json.dumps(gt)}
        out.append(row)
    return out


def _pack(obj) -> str:
    return base64.b64encode(zlib.compress(json.dumps(obj).encode())).decode()


def write(root: Path, n_train: int = 40, n_eval: int = 12, compressed: bool = False,
          domains=tuple(MAKERS), eval_domains=None) -> Path:
    """Write ``train/`` and ``online_eval/`` parquet files; returns ``root``."""
    import pyarrow as pa
    import pyarrow.parquet as pq
    root = Path(root)
    eval_domains = domains if eval_domains is None else eval_domains
    for folder, n, doms, seed in (("train", n_train, domains, 0), ("online_eval", n_eval, eval_domains, 1)):
        (root / folder).mkdir(parents=True, exist_ok=True)
        for d in doms:
            source = MAKERS[d][0]
            size = f"{n / 1000:.1f}k" if n >= 1000 else str(n)
            pq.write_table(pa.Table.from_pylist(rows(d, n, seed, compressed)),
                           root / folder / f"{d}__{source}_{size}.parquet")
    return root


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("root")
    ap.add_argument("--compressed", action="store_true", help="write the compressed variant")
    ap.add_argument("--n-train", type=int, default=40)
    ap.add_argument("--n-eval", type=int, default=12)
    args = ap.parse_args()
    root = write(Path(args.root), args.n_train, args.n_eval, args.compressed)
    print(f"wrote a Guru-format sample to {root}")


if __name__ == "__main__":
    main()
