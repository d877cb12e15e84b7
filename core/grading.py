"""Difficulty grading: a prompt's pass rate turned into a level that curricula can use.

Levels (the same scale as the synthetic tasks' 1-4, easiest first)::

    level 1: pass rate >= 0.75    level 2: >= 0.5    level 3: >= 0.25    level 4: < 0.25

A pass rate comes from the data when it has one (Guru's ``qwen2.5_7b_pass_rate`` /
``qwen3_30b_pass_rate``), else from our own evaluator: ``grade_with_policy`` samples ``n``
responses per prompt from the base policy, scores them with the reward plugin and caches the
rate per (policy, prompt) under ``<cache_dir>/grades/<policy key>.json``, so a grid grades a
pool once per base policy. Ungraded records carry level 0.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

THRESHOLDS = (0.75, 0.5, 0.25)   # lower bounds of levels 1, 2, 3; below the last: level 4
LEVELS = (1, 2, 3, 4)
UNGRADED = 0


def difficulty_level(pass_rate: float | None) -> int:
    if pass_rate is None:
        return UNGRADED
    for level, bound in enumerate(THRESHOLDS, start=1):
        if pass_rate >= bound:
            return level
    return LEVELS[-1]


def prompt_key(record: dict) -> str:
    ident = json.dumps([record["data_source"], record["prompt"]], sort_keys=True, default=str)
    return hashlib.sha256(ident.encode()).hexdigest()[:20]


def grade_with_policy(records: list[dict], sample_fn, score_fn, n: int, cache_file: Path,
                      log=print) -> int:
    """Fill ``extra_info.pass_rate`` / ``difficulty`` of the ungraded ``records`` in place.

    ``sample_fn(records, n)`` returns ``n`` response texts per record (grouped by record) and
    ``score_fn(records, texts, n)`` their correctness (bools). Returns how many were graded
    now (the rest came from the cache)."""
    cache_file = Path(cache_file)
    cache = json.loads(cache_file.read_text()) if cache_file.exists() else {}
    todo = [r for r in records if r["extra_info"].get("difficulty", UNGRADED) == UNGRADED]
    missing = [r for r in todo if f"{prompt_key(r)}/{n}" not in cache]
    chunk = max(1, 256 // n)
    for i in range(0, len(missing), chunk):
        batch = missing[i:i + chunk]
        correct = score_fn(batch, sample_fn(batch, n), n)
        for j, r in enumerate(batch):
            cache[f"{prompt_key(r)}/{n}"] = float(sum(correct[j * n:(j + 1) * n]) / n)
    if missing:
        cache_file.parent.mkdir(parents=True, exist_ok=True)
        tmp = cache_file.with_suffix(".tmp")
        tmp.write_text(json.dumps(cache))
        tmp.replace(cache_file)
        log(f"[grading] {len(missing)} prompts graded by the base policy ({n} samples each); "
            f"{len(todo) - len(missing)} from the cache {cache_file}")
    for r in todo:
        rate = cache[f"{prompt_key(r)}/{n}"]
        r["extra_info"].update(pass_rate=rate, pass_rate_source=f"policy/{n}",
                               difficulty=difficulty_level(rate))
    return len(missing)
