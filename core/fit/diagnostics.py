"""Is a fit a result? Identification rules, derived quantities, drawing ranges, cross-size
fits. Pure functions; results are frozen dataclasses.

A fit is *identified* only if every rule passes; otherwise ``reasons`` says which failed,
naming the parameter where there is one:

1. Points: at least ``POINTS_PER_PARAM`` (2) distinct x values per free parameter. Points
   repeated at one x (seeds of one step) count once: they average noise, they do not pin
   the curve's shape. An x where the fitted curve does not depend on any free parameter
   (the sigmoid at C = 0, the saturating exponential at x = 0 with y0 fixed) does not
   count either. 4 points for 2 parameters pass.
2. Data: y not constant (all-zero pass@1 says nothing about a curve's shape).
3. Bounds: no free parameter at its search bound in the fit, and no free parameter's
   bootstrap interval reaching a search bound (within ``BOUND_TOL`` of the search range).
4. Bootstrap: at least half of the draws usable.
5. The fit converged to finite values.

Fixed parameters are no rule's concern: they are reported as fixed, without an interval.
Anything derived from a fit that is not identified is not identified either.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from core.fit.bootstrap import (Draws, Holdout, Interval, bootstrap_draws, draws_from_theta,
                                fmt, percentile_interval, refit)
from core.fit.fit import BOUND_TOL, FitResult, Problem, TooFewPoints, fit
from core.fit.laws import get_law

POINTS_PER_PARAM = 2


@dataclass(frozen=True, eq=False)
class Quantity:
    """A number estimated from a fit (a parameter, or derived from the parameters) with its
    bootstrap interval and draws."""
    name: str
    interval: Interval
    identified: bool
    reasons: tuple[str, ...] = ()
    draws: np.ndarray = field(default_factory=lambda: np.empty(0), repr=False)

    @property
    def estimate(self) -> float:
        return self.interval.estimate

    def describe(self) -> str:
        if not self.identified:
            return f"{self.name}: not identified ({'; '.join(self.reasons)})"
        return f"{self.name} = {self.interval}"


@dataclass(frozen=True, eq=False)
class Assessment:
    """A fit with its intervals and whether it is a result. ``fit`` is None when there
    were too few points to fit at all."""
    law: str
    fit: FitResult | None
    intervals: dict[str, Interval]
    identified: bool
    reasons: tuple[str, ...]
    draws: Draws | None = field(default=None, repr=False)
    notes: tuple[str, ...] = ()          # facts that do not block identification

    def describe(self) -> str:
        """One line: "A = 0.81 [0.77, 0.85], B = 1.9 [1.2, 3.1]; R0 = 0.62 (fixed)", or
        "not identified: <reasons>"."""
        if not self.identified:
            return "not identified: " + "; ".join(self.reasons)
        free = [f"{p} = {i}" for p, i in self.intervals.items() if not i.fixed]
        fixed = [f"{p} = {i}" for p, i in self.intervals.items() if i.fixed]
        return "; ".join(", ".join(part) for part in (free, fixed) if part)

    def band(self, x, level: float = 0.9) -> tuple[np.ndarray, np.ndarray]:
        """Pointwise percentile band of the fitted curve at x over the bootstrap draws."""
        if self.draws is None or self.draws.n == 0:
            nan = np.full(np.shape(x), np.nan)
            return nan, nan
        law = get_law(self.law)
        with np.errstate(all="ignore"):
            ys = law.fn(np.asarray(x, float), *(self.draws.column(p)[:, None] for p in law.params))
        alpha = (1 - level) / 2
        return np.nanquantile(ys, alpha, axis=0), np.nanquantile(ys, 1 - alpha, axis=0)

    def quantity(self, name: str) -> Quantity:
        """A parameter as a Quantity (identified only if the whole fit is)."""
        draws = self.draws.column(name) if self.draws is not None else np.empty(0)
        return Quantity(name, self.intervals[name], self.identified, self.reasons, draws)


# ------------------------------------------------------------------ the rules

def count_rule(n_distinct: int, n_free: int, uninformative: Sequence[float] = ()) -> str | None:
    need = POINTS_PER_PARAM * n_free
    if n_distinct >= need:
        return None
    dropped = (f"; x = {', '.join(fmt(v) for v in uninformative)} not counted: the curve "
               "there does not depend on the free parameters") if len(uninformative) else ""
    return (f"too few points: {n_distinct} distinct x for {n_free} free parameters "
            f"(need {need}){dropped}")


def informative_x(result: FitResult) -> tuple[int, tuple[float, ...]]:
    """How many distinct x inform the free parameters (the fitted curve's Jacobian there is
    not zero), and the x values that do not."""
    law, xs = get_law(result.law), np.unique(result.x)
    with np.errstate(all="ignore"):
        jac = law.jacobian(xs, **result.params)[:, [law.params.index(p) for p in result.free]]
    mag = np.abs(np.nan_to_num(jac)).max(axis=1, initial=0.0)
    dead = mag <= 1e-12 * max(float(mag.max(initial=0.0)), 1e-300)
    return int(np.sum(~dead)), tuple(float(v) for v in xs[dead])


def _theta(result: FitResult, name: str, v):
    return np.log(v) if name in get_law(result.law).log_params else np.asarray(v, float)


def _near_bound(result: FitResult, name: str, v) -> str | None:
    """'lower'/'upper' if v is within BOUND_TOL of the search range of that bound."""
    lo, hi = (_theta(result, name, b) for b in result.bounds[name])
    t, tol = _theta(result, name, v), BOUND_TOL * (hi - lo)
    return "lower" if t - lo <= tol else "upper" if hi - t <= tol else None


def check(result: FitResult, draws: Draws, level: float = 0.9) -> tuple[str, ...]:
    """Reasons this fit is not identified (empty if it is); see the module docstring."""
    reasons = []
    n_x, dead = informative_x(result)
    if (r := count_rule(n_x, len(result.free), dead)) is not None:
        reasons.append(r)
    if np.ptp(result.y) <= 1e-12 * max(1.0, float(np.max(np.abs(result.y)))):
        reasons.append(f"degenerate data: y is constant ({fmt(float(result.y[0]))})")
    if not (np.isfinite(result.loss) and all(np.isfinite(list(result.params.values())))):
        reasons.append("the fit did not converge to finite values")
    for p in result.at_bound:
        side = _near_bound(result, p, result.params[p]) or "lower"
        bound = fmt(result.bounds[p][side == "upper"])
        reasons.append(f"{p} at its search bound ({side}, {bound})")
    if draws.n < 0.5 * draws.n_requested:
        reasons.append(f"only {draws.n} of {draws.n_requested} bootstrap draws usable")
    for p in result.free:
        if p in result.at_bound or draws.n == 0:
            continue
        ci = percentile_interval(result.params[p], draws.column(p), level)
        for side in {_near_bound(result, p, ci.low), _near_bound(result, p, ci.high)} - {None}:
            reasons.append(f"{p}: {level:.0%} bootstrap interval reaches its search bound "
                           f"({side}, {fmt(result.bounds[p][side == 'upper'])})")
    return tuple(reasons)


def assess(result: FitResult, draws: Draws, level: float = 0.9,
           notes: tuple[str, ...] = ()) -> Assessment:
    reasons = check(result, draws, level)
    return Assessment(result.law, result, draws.intervals(result.params, level), not reasons,
                      reasons, draws, notes)


def estimate(law: str, x, y, *, fixed: dict[str, float] | None = None,
             window: tuple[float, float] | None = None, n_boot: int = 200, level: float = 0.9,
             seed: int = 0, n_restarts: int = 2, huber_delta: float = 0.05,
             n_starts: int = 16) -> Assessment:
    """Fit, bootstrap and assess in one call: what a report should use."""
    try:
        result = fit(law, x, y, window=window, huber_delta=huber_delta, n_starts=n_starts,
                     seed=seed, fixed=fixed)
    except TooFewPoints as exc:
        return _not_fitted(law, fixed, level, count_rule(exc.n_distinct, exc.n_free))
    draws = bootstrap_draws(result, n_boot=n_boot, seed=seed, n_restarts=n_restarts)
    return assess(result, draws, level)


def _not_fitted(law: str, fixed, level: float, reason: str, notes=()) -> Assessment:
    fixed = fixed or {}
    intervals = {p: Interval(float(fixed[p]), np.nan, np.nan, level, True)
                 for p in get_law(law).params if p in fixed}
    return Assessment(law, None, intervals, False, (reason,), None, tuple(notes))


# ------------------------------------------------------------------ derived quantities

def derive(source: Assessment, name: str,
           fn: Callable[[dict[str, np.ndarray]], np.ndarray], level: float = 0.9) -> Quantity:
    """``fn`` of the parameters, at the estimate and on every bootstrap draw."""
    if source.fit is None or source.draws is None:
        return Quantity(name, Interval(np.nan, np.nan, np.nan, level), False,
                        ("its fit is not identified: " + "; ".join(source.reasons),))
    with np.errstate(all="ignore"):
        est = float(fn({p: np.float64(v) for p, v in source.fit.params.items()}))
        draws = np.asarray(fn({p: source.draws.column(p) for p in source.draws.params}), float)
    reasons = ["its fit is not identified: " + "; ".join(source.reasons)] \
        if source.reasons else []
    undefined = int(np.sum(~np.isfinite(draws)))
    if not np.isfinite(est):
        reasons.append(f"{name} is not finite at the estimate")
    if undefined > (1 - level) / 2 * max(len(draws), 1):
        reasons.append(f"{name} is undefined in {undefined} of {len(draws)} bootstrap draws")
    return Quantity(name, percentile_interval(est, draws, level), not reasons, tuple(reasons),
                    draws)


def _expect(a: Assessment, law: str) -> None:
    if a.law != law:
        raise ValueError(f"this quantity is defined for the {law!r} law, got {a.law!r}")


def steps_to_fraction(a: Assessment, frac: float = 0.9, level: float = 0.9) -> Quantity:
    """saturating_exp: x at which y has covered ``frac`` of the way from y0 to A:
    tau ln(1 / (1 - frac)) (tau ln 10 for 90%)."""
    _expect(a, "saturating_exp")
    return derive(a, f"steps to {frac:.0%} of the asymptote",
                  lambda p: p["tau"] * np.log(1.0 / (1.0 - frac)), level)


def compute_to_fraction(a: Assessment, frac: float = 0.9, level: float = 0.9) -> Quantity:
    """sigmoid: compute C at which R has covered ``frac`` of the gain from R0 to the
    ceiling A: C_mid (frac / (1 - frac))^(1/B)."""
    _expect(a, "sigmoid")
    return derive(a, f"compute to {frac:.0%} of the gain to A",
                  lambda p: p["C_mid"] * (frac / (1.0 - frac)) ** (1.0 / p["B"]), level)


# ------------------------------------------------------------------ where to draw a fit

def draw_ranges(result: FitResult, held: Holdout | None = None
                ) -> tuple[tuple[float, float], tuple[float, float] | None]:
    """(draw_range, extrapolation_range): the x range of the fit's data, and beyond it only
    the held-out window checked by ``held`` (None if nothing was held out beyond the
    data). Draw the extrapolation marked as such (dashed), and nothing past it."""
    draw = result.window
    if held is None or held.fit.law != result.law or held.heldout_x[1] <= draw[1]:
        return draw, None
    return draw, (draw[1], held.heldout_x[1])


# ------------------------------------------------------------------ across model sizes

def across_sizes(law: str, sizes: Sequence[float], quantities: Sequence[Quantity], *,
           fixed: dict[str, float] | None = None, n_boot: int = 200, level: float = 0.9,
           seed: int = 0, n_restarts: int = 2, huber_delta: float = np.inf) -> Assessment:
    """Fit ``law`` (e.g. ``power_n`` y = a N^b, or ``k_of_n`` K_max/(1+N0/N)) to one
    quantity per model size (a ceiling A, a gain, steps to 90%...).

    Uncertainty propagates: each bootstrap draw picks, per size, one of that size's own
    bootstrap draws, and refits. Sizes whose quantity is not identified are left out (a
    note says so); the rules then apply to the sizes that remain. Plain least squares by
    default (``huber_delta=inf``): with a handful of points there are no outliers to resist.
    """
    keep = [i for i, q in enumerate(quantities)
            if q.identified and np.isfinite(q.estimate) and np.isfinite(q.draws).any()]
    notes = tuple(f"N = {fmt(sizes[i])} left out: {quantities[i].name} not identified"
                  for i in range(len(quantities)) if i not in keep)
    n = np.array([sizes[i] for i in keep], float)
    est = np.array([quantities[i].estimate for i in keep], float)
    try:
        result = fit(law, n, est, huber_delta=huber_delta, seed=seed, fixed=fixed)
    except TooFewPoints as exc:
        return _not_fitted(law, fixed, level, count_rule(exc.n_distinct, exc.n_free), notes)
    rng = np.random.default_rng(seed)
    ys = np.stack([rng.choice(quantities[i].draws[np.isfinite(quantities[i].draws)], n_boot)
                   for i in keep], axis=1)
    prob = Problem.make(get_law(law), result.x, result.bounds, result.fixed)
    theta = refit(prob, prob.to_theta(result.params), ys, None, rng, n_restarts, huber_delta)
    return assess(result, draws_from_theta(prob, theta, n_boot, seed), level, notes)
