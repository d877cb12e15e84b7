"""Evaluation metrics: the unbiased pass@k estimator and bootstrap intervals for gains.

Metric names are stable across backends and use only characters MLflow accepts:
``val/<domain>/pass_at_<k>``, ``val/pass_at_<k>``, ``val/creativity_index`` (pass@k_max),
``val/response_length``; see DESIGN.md for the full list.
"""
from __future__ import annotations

import numpy as np


def pass_at_k(n, c, k) -> np.ndarray:
    """Unbiased pass@k (Chen et al. 2021) for n samples of which c are correct.

    ``1 - C(n-c, k) / C(n, k)`` in the numerically stable product form
    ``1 - prod_{j=n-c+1}^{n} (1 - k/j)``, and exactly 1 when ``n - c < k``. Vectorised: n, c
    and k broadcast against each other.
    """
    n, c, k = np.broadcast_arrays(np.asarray(n, dtype=np.int64), np.asarray(c, dtype=np.int64),
                                  np.asarray(k, dtype=np.int64))
    if np.any(c < 0) or np.any(c > n):
        raise ValueError("pass_at_k: need 0 <= c <= n")
    if np.any(k < 1) or np.any(k > n):
        raise ValueError("pass_at_k: need 1 <= k <= n (draw more samples than k)")
    if n.size == 0:
        return np.zeros(n.shape)
    j = np.arange(1, int(n.max()) + 1, dtype=np.float64)            # (J,)
    lo, hi = (n - c + 1)[..., None], n[..., None]
    terms = np.where((j >= lo) & (j <= hi), 1.0 - k[..., None] / j, 1.0)
    return np.where(n - c < k, 1.0, 1.0 - terms.prod(axis=-1))


def ks_up_to(k_max: int) -> list[int]:
    """k = 1, 2, 4, ... up to k_max, and k_max itself."""
    ks, k = [], 1
    while k < k_max:
        ks.append(k)
        k *= 2
    return ks + [k_max]


def pass_at_k_metrics(correct: np.ndarray, domains: list[str], k_max: int,
                      prefix: str = "val", levels: list[int] | None = None) -> dict[str, float]:
    """Per-domain and overall pass@k from a (prompts, n) boolean matrix of sample correctness,
    and with ``levels`` (each prompt's difficulty level, 0 = ungraded) pass@1 and pass@k_max per
    level as ``<prefix>/level_<L>/pass_at_<k>``.

    The overall value is the mean over prompts (each prompt weighs the same), and
    ``<prefix>/creativity_index`` is pass@k_max.
    """
    correct = np.asarray(correct, dtype=bool)
    n = correct.shape[1]
    c = correct.sum(axis=1)
    out: dict[str, float] = {}
    domains_arr = np.asarray(domains)
    for k in ks_up_to(k_max):
        per_prompt = pass_at_k(n, c, k)
        out[f"{prefix}/pass_at_{k}"] = float(per_prompt.mean())
        for d in sorted(set(domains)):
            out[f"{prefix}/{d}/pass_at_{k}"] = float(per_prompt[domains_arr == d].mean())
    out[f"{prefix}/creativity_index"] = out[f"{prefix}/pass_at_{k_max}"]
    if levels is not None:
        lv = np.asarray(levels)
        for k in sorted({1, k_max}):
            per_prompt = pass_at_k(n, c, k)
            for level in sorted(set(levels)):
                out[f"{prefix}/level_{level}/pass_at_{k}"] = float(per_prompt[lv == level].mean())
    return out


def paired_gain_ci(before: np.ndarray, after: np.ndarray, level: float = 0.9,
                   n_boot: int = 2000, seed: int = 0) -> tuple[float, float, float]:
    """Mean gain ``after - before`` with a percentile bootstrap interval.

    ``before`` and ``after`` are (seeds, prompts) arrays of per-prompt pass@1, paired by
    prompt. Seeds and prompts are resampled with replacement (a two-way bootstrap), so the
    interval covers both the RL seed's randomness and the choice of eval prompts.
    """
    gain = np.asarray(after, float) - np.asarray(before, float)
    if gain.ndim == 1:
        gain = gain[None, :]
    rng = np.random.default_rng(seed)
    s, p = gain.shape
    rows = rng.integers(0, s, size=(n_boot, s))
    cols = rng.integers(0, p, size=(n_boot, p))
    boots = np.array([gain[r][:, cc].mean() for r, cc in zip(rows, cols)])
    alpha = (1 - level) / 2
    return float(gain.mean()), float(np.quantile(boots, alpha)), float(np.quantile(boots, 1 - alpha))
