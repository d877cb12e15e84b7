"""Preference pairs (D_RM) for reward-model training: built from policy samples labelled by
the gold rule verifier, or read from files in the common ``prompt, chosen, rejected`` form.

A pair is ``{"prompt": str, "chosen": str, "rejected": str, "data_source": str}``. Built pairs
take prompts of the RL train split (with their own seed), sample G responses per prompt from
a policy, and pair one correct with one incorrect response to the same prompt; prompts where
every sample is right or every one is wrong give no pair. ``fingerprint(pairs)`` hashes the
exact pairs, in order.

Hard negatives (``negatives="hard"``, ``reward.rm.negatives=hard``): the rejected response is
drawn among the wrong responses that are *well formed* by the gold verifier (an answer after the
marker, in the task's alphabet), so chosen and rejected differ in correctness but not in format
and an RM cannot reach high accuracy by checking the format alone; a prompt whose wrong samples
are all malformed gives no pair.
"""
from __future__ import annotations

import hashlib
import json
import random
from collections.abc import Callable, Sequence
from pathlib import Path

FIELDS = ("prompt", "chosen", "rejected")
NEGATIVES = ("any", "hard")   # which wrong response a pair rejects (reward.rm.negatives)


class PreferenceDataError(ValueError):
    """A pairs file or row is bad; the message names the file, row and field."""


def policy_pairs(records: Sequence[dict], sample_fn: Callable[[list[dict], int], list[str]],
                 correct_fn: Callable[[list[dict], list[str], int], Sequence[bool]],
                 n_pairs: int, group_size: int = 8, seed: int = 0,
                 chunk: int = 32, negatives: str = "any") -> list[dict]:
    """``n_pairs`` pairs (at most one per prompt) from ``records`` in a seeded order.

    ``sample_fn(batch, G)`` returns G texts per record (grouped by record) and
    ``correct_fn(batch, texts, G)`` whether each is correct by the gold verifier, as a bool or
    a ``(correct, well_formed)`` pair (required for ``negatives="hard"``). Raises when the
    records run out before ``n_pairs`` pairs were found (the message says how many)."""
    if negatives not in NEGATIVES:
        raise PreferenceDataError(f"negatives {negatives!r}: allowed {', '.join(NEGATIVES)}")
    order = list(records)
    random.Random(seed).shuffle(order)
    rng = random.Random(seed + 1)
    pairs: list[dict] = []
    for i in range(0, len(order), chunk):
        batch = order[i:i + chunk]
        texts = sample_fn(batch, group_size)
        labels = [_label(v, negatives) for v in correct_fn(batch, texts, group_size)]
        for j, r in enumerate(batch):
            group = list(zip(texts[j * group_size:(j + 1) * group_size],
                             labels[j * group_size:(j + 1) * group_size]))
            good = [t for t, (c, _) in group if c]
            bad = [t for t, (c, f) in group if not c and (f or negatives == "any")]
            if good and bad:
                pairs.append({"prompt": r["prompt"][-1]["content"], "chosen": rng.choice(good),
                              "rejected": rng.choice(bad), "data_source": r["data_source"]})
                if len(pairs) == n_pairs:
                    return pairs
    hard = " or had no well-formed wrong sample (hard negatives)" if negatives == "hard" else ""
    raise PreferenceDataError(
        f"only {len(pairs)} of {n_pairs} preference pairs from {len(order)} prompts: the policy's "
        f"{group_size} samples were all right or all wrong on the others{hard} (more prompts, a "
        f"larger group or a policy nearer 50% accuracy gives more pairs)")


def _label(value, negatives: str) -> tuple[bool, bool]:
    """(correct, well formed) from what ``correct_fn`` returned for one text."""
    if isinstance(value, tuple):
        return bool(value[0]), bool(value[1])
    if negatives == "hard":
        raise PreferenceDataError("hard negatives need correct_fn to return (correct, well_formed)")
    return bool(value), True


def load_pairs(path: str | Path) -> list[dict]:
    """Pairs from a ``.jsonl``, ``.json`` (a list) or ``.parquet`` file with ``prompt``,
    ``chosen``, ``rejected`` string columns (``data_source`` optional)."""
    path = Path(path)
    if not path.exists():
        raise PreferenceDataError(f"{path}: no such file")
    if path.suffix == ".jsonl":
        rows = []
        for i, line in enumerate(path.read_text().splitlines()):
            if line.strip():
                try:
                    rows.append(json.loads(line))
                except ValueError as exc:
                    raise PreferenceDataError(f"{path.name}: row {i}: not JSON ({exc})") from exc
    elif path.suffix == ".json":
        rows = json.loads(path.read_text())
    elif path.suffix == ".parquet":
        import pyarrow.parquet as pq
        rows = pq.read_table(path).to_pylist()
    else:
        raise PreferenceDataError(f"{path}: unknown format {path.suffix!r}; allowed: .jsonl, .json, .parquet")
    problems, pairs = [], []
    for i, row in enumerate(rows):
        bad = [f for f in FIELDS if not isinstance(row.get(f) if isinstance(row, dict) else None, str)]
        if bad:
            problems += [f"{path.name}: row {i}: field {f}: expected a string, got "
                         f"{str(row.get(f) if isinstance(row, dict) else row)[:40]!r}" for f in bad]
            continue
        if row["chosen"] == row["rejected"]:
            problems.append(f"{path.name}: row {i}: field rejected: expected a response different from chosen")
            continue
        pairs.append({"prompt": row["prompt"], "chosen": row["chosen"], "rejected": row["rejected"],
                      "data_source": row.get("data_source") or "external"})
    if problems:
        shown = "\n  ".join(problems[:20])
        raise PreferenceDataError(f"{len(problems)} bad pair(s):\n  {shown}")
    return pairs


def fingerprint(pairs: Sequence[dict]) -> str:
    h = hashlib.sha256()
    for p in pairs:
        h.update(json.dumps([p["prompt"], p["chosen"], p["rejected"]]).encode())
    return h.hexdigest()[:16]
