"""Uncertainty for fits: bootstrap draws and intervals (explicit seeds) and held-out
extrapolation.

A bootstrap draw resamples the fit's points with replacement, which is the same as giving
each point an integer weight (how often it was drawn). All draws share x, so they are
refitted together, as one batch, by ``core.fit.fit.solve``: each from the full fit's
parameters (a warm start) and from ``n_restarts`` seeded random starts, keeping the best.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from core.fit.fit import FitResult, Problem, fit, random_starts, solve
from core.fit.laws import get_law


@dataclass(frozen=True)
class Interval:
    """A point estimate with a percentile interval; ``fixed`` parameters were not fitted and
    have no interval (``low`` and ``high`` are nan)."""
    estimate: float
    low: float
    high: float
    level: float
    fixed: bool = False

    def __str__(self) -> str:
        if self.fixed:
            return f"{fmt(self.estimate)} (fixed)"
        return f"{fmt(self.estimate)} [{fmt(self.low)}, {fmt(self.high)}]"


def fmt(v: float) -> str:
    """3 significant digits, short exponents: 0.812, 1.9, 2.1e9, 3.2e-5."""
    if not np.isfinite(v):
        return str(v)
    s = f"{v:.3g}"
    if "e" in s:
        mant, exp = s.split("e")
        s = f"{mant}e{int(exp)}"
    return s


@dataclass(frozen=True, eq=False)
class Draws:
    """Bootstrap refits: one row per usable draw, one column per law parameter (fixed
    parameters hold their fixed value)."""
    params: tuple[str, ...]
    values: np.ndarray
    fixed: tuple[str, ...]
    n_requested: int
    seed: int

    @property
    def n(self) -> int:
        return len(self.values)

    def column(self, name: str) -> np.ndarray:
        return self.values[:, self.params.index(name)]

    def intervals(self, estimates: dict[str, float], level: float = 0.9) -> dict[str, Interval]:
        return {p: percentile_interval(estimates[p], self.column(p), level, p in self.fixed)
                for p in self.params}


def percentile_interval(estimate: float, draws, level: float, fixed: bool = False) -> Interval:
    draws = np.asarray(draws, float)
    draws = draws[np.isfinite(draws)]
    if fixed or draws.size == 0:
        return Interval(float(estimate), np.nan, np.nan, level, fixed)
    alpha = (1 - level) / 2
    return Interval(float(estimate), float(np.quantile(draws, alpha)),
                    float(np.quantile(draws, 1 - alpha)), level)


def refit(prob: Problem, theta_hat: np.ndarray, y, weights, rng: np.random.Generator,
          n_restarts: int, delta: float) -> np.ndarray:
    """Best of (warm start, n_restarts random starts) for each of D problems given by
    y (D, n) and weights (D, n) (either may be None: all ones / shared). Returns (D, k)."""
    n_draws = len(y if weights is None else weights)
    k = len(prob.free)
    starts = np.concatenate([np.broadcast_to(theta_hat, (n_draws, 1, k)),
                             random_starts(prob, rng, n_draws * n_restarts)
                             .reshape(n_draws, n_restarts, k)], axis=1)
    rep = 1 + n_restarts
    y_rep = y if np.ndim(y) == 1 else np.repeat(y, rep, axis=0)
    w_rep = None if weights is None else np.repeat(weights, rep, axis=0)
    theta, cost = solve(prob, starts.reshape(n_draws * rep, k), y_rep, w_rep, delta=delta)
    cost = np.where(np.isfinite(cost), cost, np.inf).reshape(n_draws, rep)
    return theta.reshape(n_draws, rep, k)[np.arange(n_draws), np.argmin(cost, axis=1)]


def draws_from_theta(prob: Problem, theta: np.ndarray, n_requested: int, seed: int) -> Draws:
    params = prob.to_params(theta)
    values = np.stack([np.broadcast_to(params[p], len(theta)) for p in prob.law.params], axis=1)
    return Draws(prob.law.params, np.array(values, float), tuple(prob.fixed), n_requested, seed)


def bootstrap_draws(result: FitResult, n_boot: int = 200, seed: int = 0,
                    n_restarts: int = 2) -> Draws:
    """Refit ``n_boot`` resamples of the fit's points (``seed`` makes them reproducible),
    with the fit's own fixed parameters, Huber scale and search bounds. Draws whose points
    cover fewer distinct x than free parameters cannot be fitted and are dropped."""
    law = get_law(result.law)
    prob = Problem.make(law, result.x, result.bounds, result.fixed)
    rng = np.random.default_rng(seed)
    n = len(result.x)
    idx = rng.integers(0, n, size=(n_boot, n))
    weights = np.zeros((n_boot, n))
    np.add.at(weights, (np.arange(n_boot)[:, None], idx), 1.0)
    _, group = np.unique(result.x, return_inverse=True)
    per_x = np.zeros((n_boot, group.max() + 1))
    np.add.at(per_x, (slice(None), group), weights)
    usable = (per_x > 0).sum(axis=1) >= len(prob.free)
    theta = refit(prob, prob.to_theta(result.params), result.y, weights[usable], rng,
                  n_restarts, result.huber_delta)
    return draws_from_theta(prob, theta, n_boot, seed)


def bootstrap(result: FitResult, n_boot: int = 200, level: float = 0.9, seed: int = 0,
              n_restarts: int = 2, **fit_opts) -> dict[str, Interval]:
    """Percentile intervals for each parameter from ``bootstrap_draws``; fixed parameters
    come back as ``Interval(fixed=True)``. ``fit_opts`` is accepted for the old call style:
    the refits always use the fit's own options, and a different ``fixed`` is an error."""
    if "fixed" in fit_opts and {p: float(v) for p, v in (fit_opts["fixed"] or {}).items()} \
            != result.fixed:
        raise ValueError(f"bootstrap refits with the fit's fixed parameters {result.fixed}, "
                         f"got fixed={fit_opts['fixed']}")
    draws = bootstrap_draws(result, n_boot=n_boot, seed=seed, n_restarts=n_restarts)
    return draws.intervals(result.params, level)


@dataclass(frozen=True)
class Holdout:
    """A fit on all but the largest-x points and its error on those (extrapolation)."""
    fit: FitResult
    error: float                       # mean absolute error on the held-out points
    n_holdout: int
    heldout_x: tuple[float, float]     # x range of the held-out points


def holdout(law: str, x, y, n_holdout: int, **fit_opts) -> Holdout:
    """Fit on all but the ``n_holdout`` largest-x points; mean absolute error on those.
    The split may not separate points at one x (e.g. seeds at the last step)."""
    x, y = np.asarray(x, float), np.asarray(y, float)
    keep = np.isfinite(x) & np.isfinite(y)
    order = np.argsort(x[keep], kind="stable")
    x, y = x[keep][order], y[keep][order]
    if n_holdout < 1 or n_holdout >= len(x):
        raise ValueError(f"n_holdout must be in [1, {len(x) - 1}], got {n_holdout}")
    if x[-n_holdout] == x[-n_holdout - 1]:
        raise ValueError(f"holding out {n_holdout} points splits the points at x = "
                         f"{x[-n_holdout]:.4g}; hold out all points at one x or none")
    result = fit(law, x[:-n_holdout], y[:-n_holdout], **fit_opts)
    err = float(np.mean(np.abs(result.predict(x[-n_holdout:]) - y[-n_holdout:])))
    return Holdout(result, err, n_holdout, (float(x[-n_holdout]), float(x[-1])))


def holdout_error(law: str, x, y, n_holdout: int, **fit_opts) -> tuple[FitResult, float]:
    """``holdout`` as (fit, error), the form ``core.report`` uses."""
    h = holdout(law, x, y, n_holdout, **fit_opts)
    return h.fit, h.error
