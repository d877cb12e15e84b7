"""Robust multi-start fitting: ``fit(law, x, y, **opts) -> FitResult``.

Minimises a Huber loss on the residuals with ``scipy.optimize.least_squares`` from several
seeded starting points inside the law's bounds (log-spaced for scale parameters) and keeps the
best. Pure computation: no I/O, no plotting.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from core.fit.laws import Law, get_law


@dataclass(frozen=True)
class FitResult:
    law: str
    params: dict[str, float]
    window: tuple[float, float]          # x range the fit used
    x: np.ndarray = field(repr=False)
    y: np.ndarray = field(repr=False)
    residuals: np.ndarray = field(repr=False)
    loss: float = 0.0
    at_bound: tuple[str, ...] = ()       # parameters stuck at a search bound: not identified

    def predict(self, x) -> np.ndarray:
        return get_law(self.law)(x, **self.params)

    @property
    def rmse(self) -> float:
        return float(np.sqrt(np.mean(self.residuals ** 2)))


def fit(law: str | Law, x, y, *, window: tuple[float, float] | None = None,
        huber_delta: float = 0.05, n_starts: int = 16, seed: int = 0,
        fixed: dict[str, float] | None = None) -> FitResult:
    """Fit ``law`` to (x, y) within ``window`` (inclusive x range; None = all points).

    ``fixed`` pins parameters (e.g. ``{"R0": 0.3}`` for ScaleRL's known start value).
    """
    from scipy.optimize import least_squares
    law = get_law(law) if isinstance(law, str) else law
    x, y = np.asarray(x, float), np.asarray(y, float)
    if x.shape != y.shape or x.ndim != 1:
        raise ValueError(f"x and y must be 1-D of one length, got {x.shape} and {y.shape}")
    keep = np.isfinite(x) & np.isfinite(y)
    if window is not None:
        keep &= (x >= window[0]) & (x <= window[1])
    x, y = x[keep], y[keep]
    fixed = dict(fixed or {})
    unknown = set(fixed) - set(law.params)
    if unknown:
        raise KeyError(f"cannot fix {sorted(unknown)} of law {law.name!r}; params: {law.params}")
    free = [p for p in law.params if p not in fixed]
    if len(x) < len(free):
        raise ValueError(f"law {law.name!r} has {len(free)} free parameters but only "
                         f"{len(x)} points lie in the fit window")
    bounds = dict(zip(law.params, law.bounds(x, y)))
    is_log = [p in law.log_params for p in free]
    lo = np.array([np.log(bounds[p][0]) if lg else bounds[p][0] for p, lg in zip(free, is_log)])
    hi = np.array([np.log(bounds[p][1]) if lg else bounds[p][1] for p, lg in zip(free, is_log)])

    def unpack(theta):
        vals = {p: (np.exp(t) if lg else t) for p, t, lg in zip(free, theta, is_log)}
        return {**vals, **fixed}

    def resid(theta):
        r = law(x, **unpack(theta)) - y
        return np.where(np.isfinite(r), r, 1e6)

    rng = np.random.default_rng(seed)
    best = None
    for _ in range(n_starts):
        theta0 = lo + (hi - lo) * rng.uniform(0.05, 0.95, size=len(free))
        sol = least_squares(resid, theta0, bounds=(lo, hi), loss="huber", f_scale=huber_delta)
        if best is None or sol.cost < best.cost:
            best = sol
    params = {p: float(v) for p, v in unpack(best.x).items()}
    params = {p: params[p] for p in law.params}
    tol = 1e-6 * (hi - lo)
    at_bound = tuple(p for p, t, a, b, e in zip(free, best.x, lo, hi, tol)
                     if t - a <= e or b - t <= e)
    return FitResult(law=law.name, params=params, window=(float(x.min()), float(x.max())),
                     x=x, y=y, residuals=law(x, **params) - y, loss=float(best.cost),
                     at_bound=at_bound)
