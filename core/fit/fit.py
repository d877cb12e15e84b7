"""Robust multi-start fitting: ``fit(law, x, y, **opts) -> FitResult``.

Minimises a Huber loss on the residuals, searching each parameter inside the law's bounds
(log-spaced for scale parameters), from several seeded starting points, and keeps the best.
The minimiser (``solve``) is a bounded Levenberg-Marquardt with the laws' analytic
Jacobians that advances many problems at once as arrays: the random starts of one fit, or
every bootstrap draw of ``core.fit.bootstrap`` (same x; the draws differ in y or in the
weight of each point). Pure computation: no I/O, no plotting.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from core.fit.laws import Law, get_law

# A parameter within this fraction of its search range (in the coordinates the fitter
# searches: log for scale parameters) of a bound counts as at that bound.
BOUND_TOL = 1e-3


class TooFewPoints(ValueError):
    """Fewer distinct x values than free parameters: the fit has no unique solution."""

    def __init__(self, message: str, n_distinct: int, n_free: int):
        super().__init__(message)
        self.n_distinct, self.n_free = n_distinct, n_free


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
    fixed: dict[str, float] = field(default_factory=dict)               # pinned, not fitted
    bounds: dict[str, tuple[float, float]] = field(default_factory=dict)  # search bounds
    huber_delta: float = 0.05

    def predict(self, x) -> np.ndarray:
        return get_law(self.law)(x, **self.params)

    @property
    def rmse(self) -> float:
        return float(np.sqrt(np.mean(self.residuals ** 2)))

    @property
    def free(self) -> tuple[str, ...]:
        return tuple(p for p in self.params if p not in self.fixed)

    @property
    def n_distinct(self) -> int:
        """Distinct x values: points repeated at one x (seeds) count once."""
        return int(len(np.unique(self.x)))


@dataclass(frozen=True, eq=False)
class Problem:
    """A law on fixed x, seen in the fitter's coordinates theta (log for scale parameters)."""
    law: Law
    x: np.ndarray
    free: tuple[str, ...]
    fixed: dict[str, float]
    lo: np.ndarray
    hi: np.ndarray
    is_log: np.ndarray

    @classmethod
    def make(cls, law: Law, x, bounds: dict[str, tuple[float, float]],
             fixed: dict[str, float]) -> Problem:
        free = tuple(p for p in law.params if p not in fixed)
        is_log = np.array([p in law.log_params for p in free], bool)
        lo = np.array([bounds[p][0] for p in free], float)
        hi = np.array([bounds[p][1] for p in free], float)
        with np.errstate(divide="ignore", invalid="ignore"):
            lo, hi = np.where(is_log, np.log(lo), lo), np.where(is_log, np.log(hi), hi)
        return cls(law, np.asarray(x, float), free, dict(fixed), lo, hi, is_log)

    def to_params(self, theta: np.ndarray) -> dict[str, np.ndarray]:
        """theta (..., k) -> every law parameter (fixed ones as given), natural units."""
        vals = np.where(self.is_log, np.exp(theta), theta)
        free = {p: vals[..., i] for i, p in enumerate(self.free)}
        return {p: free[p] if p in free else self.fixed[p] for p in self.law.params}

    def to_theta(self, params: dict[str, float]) -> np.ndarray:
        v = np.array([params[p] for p in self.free], float)
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.where(self.is_log, np.log(np.where(self.is_log, v, 1.0)), v)

    def evaluate(self, theta: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Model values (P, n) and Jacobian d y / d theta (P, n, k) for theta (P, k)."""
        params = {p: np.asarray(v, float)[..., None] if np.ndim(v) else v
                  for p, v in self.to_params(theta).items()}
        with np.errstate(all="ignore"):
            f = np.broadcast_to(self.law.fn(self.x, *params.values()), (len(theta), len(self.x)))
            jac = self.law.jacobian(self.x, **params)
            idx = [self.law.params.index(p) for p in self.free]
            jac = np.broadcast_to(jac[..., idx], f.shape + (len(idx),))
            scale = np.where(self.is_log, np.exp(theta), 1.0)   # chain rule for log params
            return f, jac * scale[:, None, :]


def _residuals(prob: Problem, theta, y):
    """Residuals and Jacobian; non-finite model values become a large constant residual."""
    f, jac = prob.evaluate(theta)
    r = f - y
    bad = ~np.isfinite(r)
    return np.where(bad, 1e6, r), np.where(bad[..., None] | ~np.isfinite(jac), 0.0, jac)


def huber_cost(r: np.ndarray, w: np.ndarray, delta: float) -> np.ndarray:
    """sum_i w_i rho(r_i) per row: rho = r^2/2 inside delta, delta |r| - delta^2/2 outside."""
    a = np.abs(r)
    if not np.isfinite(delta):
        return 0.5 * np.sum(w * r * r, axis=-1)
    return np.sum(w * np.where(a <= delta, 0.5 * r * r, delta * a - 0.5 * delta * delta), axis=-1)


def _lm_step(theta, r, jac, w, lam, prob: Problem, delta):
    """Damped Gauss-Newton step on the Huber loss (IRLS weights), parameters that sit at a
    bound with the gradient pushing outwards held still. Returns (step, gradient, H)."""
    omega = w if not np.isfinite(delta) else \
        w * np.minimum(1.0, delta / np.maximum(np.abs(r), 1e-300))
    g = np.einsum("pn,pnk->pk", omega * r, jac)
    h = np.einsum("pnk,pnl->pkl", jac * omega[..., None], jac)
    span = prob.hi - prob.lo
    frozen = (((theta <= prob.lo + 1e-12 * span) & (g > 0))
              | ((theta >= prob.hi - 1e-12 * span) & (g < 0)))
    diag = np.diagonal(h, axis1=1, axis2=2)
    damp = np.maximum(diag, 1e-12 * diag.max(axis=1, keepdims=True) + 1e-30)
    eye = np.eye(len(prob.free))
    a = h + lam[:, None, None] * (damp[:, :, None] * eye)
    keep = ~frozen
    a = np.where(keep[:, :, None] & keep[:, None, :], a, 0.0) + frozen[:, :, None] * eye
    gf = np.where(keep, g, 0.0)
    try:
        step = -np.linalg.solve(a, gf[..., None])[..., 0]
    except np.linalg.LinAlgError:
        step = -np.stack([np.linalg.lstsq(ai, gi, rcond=None)[0] for ai, gi in zip(a, gf)])
    return np.where(np.isfinite(step), step, 0.0), g, h


def solve(prob: Problem, theta0, y, weights=None, *, delta: float = 0.05, max_iter: int = 200,
          ftol: float = 1e-10, xtol: float = 1e-10) -> tuple[np.ndarray, np.ndarray]:
    """Minimise the (weighted) Huber loss for P problems at once from theta0 (P, k).

    ``y`` is (n,) shared by all problems or (P, n); ``weights`` (P, n) multiplies each
    point's loss (bootstrap counts). Returns the solutions (P, k) and their losses (P,).
    """
    theta = np.clip(np.array(theta0, float), prob.lo, prob.hi)
    n_prob, n = len(theta), len(prob.x)
    y = np.broadcast_to(np.asarray(y, float), (n_prob, n))
    w = np.ones((n_prob, n)) if weights is None else np.asarray(weights, float)
    r, jac = _residuals(prob, theta, y)
    cost = huber_cost(r, w, delta)
    lam, nu = np.full(n_prob, 1e-3), np.full(n_prob, 2.0)
    live = np.arange(n_prob) if len(prob.free) else np.arange(0)   # all fixed: nothing to fit
    for _ in range(max_iter):
        if live.size == 0:
            break
        th, rl, jl, wl, yl = theta[live], r[live], jac[live], w[live], y[live]
        step, g, h = _lm_step(th, rl, jl, wl, lam[live], prob, delta)
        new = np.clip(th + step, prob.lo, prob.hi)
        s = new - th
        pred = -(np.einsum("pk,pk->p", g, s) + 0.5 * np.einsum("pk,pkl,pl->p", s, h, s))
        r_new, j_new = _residuals(prob, new, yl)
        c_new = huber_cost(r_new, wl, delta)
        gain = cost[live] - c_new
        ok = np.isfinite(c_new) & (gain > 0)
        rho = np.where(pred > 0, gain / np.where(pred > 0, pred, 1.0), 0.0)
        acc = live[ok]
        theta[acc], r[acc], jac[acc] = new[ok], r_new[ok], j_new[ok]
        old_cost, cost[acc] = cost[live], c_new[ok]
        shrink = np.maximum(1 / 3, 1 - (2 * np.clip(rho, 0.0, 1.0) - 1) ** 3)   # Nielsen
        lam[live] = np.where(ok, lam[live] * shrink, lam[live] * nu[live])
        nu[live] = np.where(ok, 2.0, nu[live] * 2)
        small = ok & (((gain <= ftol * old_cost) & (rho > 0.25))
                      | (np.abs(s).max(axis=1) <= xtol * (xtol + np.abs(th).max(axis=1))))
        stuck = (lam[live] > 1e16) | (cost[live] == 0)
        live = live[~(small | stuck)]
    return theta, cost


def random_starts(prob: Problem, rng: np.random.Generator, n: int) -> np.ndarray:
    """n points drawn uniformly inside the middle 90% of the search box (theta coords)."""
    return prob.lo + (prob.hi - prob.lo) * rng.uniform(0.05, 0.95, size=(n, len(prob.free)))


def at_bound(prob: Problem, theta: np.ndarray, tol: float = BOUND_TOL) -> np.ndarray:
    """Per parameter: -1 at the lower bound, +1 at the upper bound, 0 inside (theta (..., k))."""
    span = tol * (prob.hi - prob.lo)
    return np.where(theta - prob.lo <= span, -1, np.where(prob.hi - theta <= span, 1, 0))


def fit(law: str | Law, x, y, *, window: tuple[float, float] | None = None,
        huber_delta: float = 0.05, n_starts: int = 16, seed: int = 0,
        fixed: dict[str, float] | None = None) -> FitResult:
    """Fit ``law`` to (x, y) within ``window`` (inclusive x range; None = all points).

    ``fixed`` pins parameters (e.g. ``{"R0": 0.3}`` for ScaleRL's known start value).
    Raises ``TooFewPoints`` when fewer distinct x than free parameters lie in the window.
    """
    law = get_law(law) if isinstance(law, str) else law
    x, y = np.asarray(x, float), np.asarray(y, float)
    if x.shape != y.shape or x.ndim != 1:
        raise ValueError(f"x and y must be 1-D of one length, got {x.shape} and {y.shape}")
    keep = np.isfinite(x) & np.isfinite(y)
    if window is not None:
        keep &= (x >= window[0]) & (x <= window[1])
    x, y = x[keep], y[keep]
    fixed = {p: float(v) for p, v in (fixed or {}).items()}
    unknown = set(fixed) - set(law.params)
    if unknown:
        raise KeyError(f"cannot fix {sorted(unknown)} of law {law.name!r}; params: {law.params}")
    n_free, n_x = len(law.params) - len(fixed), len(np.unique(x))
    if n_x < max(n_free, 1):
        raise TooFewPoints(f"law {law.name!r} has {n_free} free parameters but only {n_x} "
                           "distinct x values lie in the fit window", n_x, n_free)
    bounds = dict(zip(law.params, law.bounds(x, y)))
    prob = Problem.make(law, x, bounds, fixed)
    theta, cost = solve(prob, random_starts(prob, np.random.default_rng(seed), n_starts), y,
                        delta=huber_delta)
    best = int(np.argmin(np.where(np.isfinite(cost), cost, np.inf)))
    params = {p: float(v) for p, v in prob.to_params(theta[best]).items()}
    sides = at_bound(prob, theta[best])
    return FitResult(law=law.name, params=params, window=(float(x.min()), float(x.max())),
                     x=x, y=y, residuals=law(x, **params) - y, loss=float(cost[best]),
                     at_bound=tuple(p for p, s in zip(prob.free, sides) if s),
                     fixed=fixed, bounds={p: (float(a), float(b)) for p, (a, b) in bounds.items()},
                     huber_delta=huber_delta)
