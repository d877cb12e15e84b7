"""Uncertainty for fits: bootstrap intervals (explicit seeds) and held-out extrapolation."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from core.fit.fit import FitResult, fit


@dataclass(frozen=True)
class Interval:
    estimate: float
    low: float
    high: float
    level: float


def bootstrap(result: FitResult, n_boot: int = 200, level: float = 0.9, seed: int = 0,
              **fit_opts) -> dict[str, Interval]:
    """Percentile intervals for each parameter, refitting on points resampled with
    replacement (``seed`` makes them reproducible)."""
    rng = np.random.default_rng(seed)
    x, y = result.x, result.y
    draws: dict[str, list[float]] = {p: [] for p in result.params}
    for b in range(n_boot):
        idx = rng.integers(0, len(x), size=len(x))
        if len(np.unique(x[idx])) < 2:
            continue
        try:
            r = fit(result.law, x[idx], y[idx], seed=seed + b + 1, **fit_opts)
        except ValueError:
            continue
        for p, v in r.params.items():
            draws[p].append(v)
    alpha = (1 - level) / 2
    return {p: Interval(result.params[p], float(np.quantile(v, alpha)) if v else np.nan,
                        float(np.quantile(v, 1 - alpha)) if v else np.nan, level)
            for p, v in draws.items()}


def holdout_error(law: str, x, y, n_holdout: int, **fit_opts) -> tuple[FitResult, float]:
    """Fit on all but the ``n_holdout`` largest-x points; mean absolute error on those."""
    x, y = np.asarray(x, float), np.asarray(y, float)
    order = np.argsort(x)
    x, y = x[order], y[order]
    if n_holdout < 1 or n_holdout >= len(x):
        raise ValueError(f"n_holdout must be in [1, {len(x) - 1}], got {n_holdout}")
    result = fit(law, x[:-n_holdout], y[:-n_holdout], **fit_opts)
    err = float(np.mean(np.abs(result.predict(x[-n_holdout:]) - y[-n_holdout:])))
    return result, err
