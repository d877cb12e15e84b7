"""Law forms, by name. Each law maps x (compute, data, steps, sqrt-KL, model size) to y.

- ``sigmoid`` (ScaleRL, Khatri et al. 2025): R(C) = R0 + (A - R0) / (1 + (C_mid / C)^B)
- ``power`` (Tan et al. 2025): log(1 - pass@1) = -k log X + E, i.e. y = 1 - exp(E) X^-k
- ``k_of_n`` (Tan et al. 2025, across sizes): k(N) = K_max / (1 + N0 / N)
- ``power_n`` (across sizes): y = a N^b
- ``gao_bon`` (Gao et al. 2022, best-of-n): R(d) = d (a - b d), d = sqrt(KL)
- ``gao_rl`` (Gao et al. 2022, RL): R(d) = d (a - b log d)
- ``saturating_exp`` (steps to convergence): y = A - (A - y0) exp(-x / tau)

Every law carries its analytic Jacobian (d y / d parameter, in natural units; the fitter
applies the chain rule for the parameters it searches in log space). Laws broadcast: with
parameters of shape (P, 1) and x of shape (n,) they return (P, n), which is how the fitter
evaluates many starts or bootstrap draws at once.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Law:
    name: str
    params: tuple[str, ...]
    fn: Callable[..., np.ndarray]
    # (low, high) bounds per parameter given the data; "log" params are searched in log space
    bounds: Callable[[np.ndarray, np.ndarray], list[tuple[float, float]]]
    jac: Callable[..., tuple[np.ndarray, ...]]    # d fn / d param, one array per param
    log_params: tuple[str, ...] = ()
    description: str = ""

    def __call__(self, x, **params) -> np.ndarray:
        return self.fn(np.asarray(x, dtype=float), *(params[p] for p in self.params))

    def jacobian(self, x, **params) -> np.ndarray:
        """d y / d params in natural units, shape broadcast(x, params) + (n_params,)."""
        x = np.asarray(x, dtype=float)
        parts = self.jac(x, *(params[p] for p in self.params))
        shape = np.broadcast_shapes(*(np.shape(p) for p in parts))
        return np.stack([np.broadcast_to(p, shape) for p in parts], axis=-1)


def _sigmoid_terms(c, b, c_mid):
    """s = 1/(1 + (C_mid/C)^B) and 1 - s as logistics in log C, finite for any C >= 0
    (s(0) = 0); z = log(C_mid/C), set to 0 where C <= 0, where no derivative needs it."""
    pos = c > 0
    with np.errstate(divide="ignore", invalid="ignore"):
        z = np.where(pos, np.log(c_mid) - np.log(np.where(pos, c, 1.0)), np.inf)
        bz = b * z
    bad = np.where(c < 0, np.nan, 0.0)
    s, sc = np.exp(-np.logaddexp(0.0, bz)) + bad, np.exp(-np.logaddexp(0.0, -bz)) + bad
    return s, sc, np.where(pos, z, 0.0)


def _sigmoid(c, a, b, c_mid, r0):
    s, _, _ = _sigmoid_terms(c, b, c_mid)         # C = 0 gives R0, as the limit does
    return r0 + (a - r0) * s


def _sigmoid_jac(c, a, b, c_mid, r0):
    s, sc, z = _sigmoid_terms(c, b, c_mid)
    ds = s * sc                                   # -d s / d(B z)
    return s, -(a - r0) * ds * z, -(a - r0) * ds * b / c_mid, sc


def _power(x, k, e):
    return 1.0 - np.exp(e) * x ** (-k)


def _power_jac(x, k, e):
    t = np.exp(e) * x ** (-k)
    return t * np.log(x), -t


def _power_n(x, a, b):
    return a * x ** b


def _power_n_jac(x, a, b):
    t = x ** b
    return t, a * t * np.log(x)


def _k_of_n(n, k_max, n0):
    return k_max / (1.0 + n0 / n)


def _k_of_n_jac(n, k_max, n0):
    q = 1.0 / (1.0 + n0 / n)
    return q, -k_max * q * q / n


def _gao_bon(d, a, b):
    return d * (a - b * d)


def _gao_bon_jac(d, a, b):
    return d, -d * d


def _dlogd(d):
    """d log d, with its limit 0 at d = 0."""
    pos = d > 0
    return np.where(pos, d * np.log(np.where(pos, d, 1.0)), np.where(d == 0, 0.0, np.nan))


def _gao_rl(d, a, b):
    return a * d - b * _dlogd(d)


def _gao_rl_jac(d, a, b):
    return d, -_dlogd(d)


def _sat_exp(x, a, y0, tau):
    return a - (a - y0) * np.exp(-x / tau)


def _sat_exp_jac(x, a, y0, tau):
    e = np.exp(-x / tau)
    return 1.0 - e, e, -(a - y0) * e * x / tau ** 2


def _span(x):
    x = np.asarray(x, float)
    return max(float(np.min(x[x > 0])) if np.any(x > 0) else 1e-12, 1e-300), float(np.max(x))


def _ymax(y) -> float:
    return max(1e-9, float(np.max(np.abs(y))))


def _power_n_bounds(x, y):
    lo, hi = _span(x)
    reach = max(hi, 1.0 / lo, 10.0) ** 5          # a = y / N^b for any b in [-5, 5]
    return [(_ymax(y) * 1e-6 / reach, _ymax(y) * 1e6 * reach), (-5.0, 5.0)]


LAWS: dict[str, Law] = {law.name: law for law in (
    Law("sigmoid", ("A", "B", "C_mid", "R0"), _sigmoid,
        lambda x, y: [(0.0, 1.0), (0.05, 10.0), (_span(x)[0] / 100, _span(x)[1] * 100),
                      (0.0, 1.0)],
        _sigmoid_jac, log_params=("C_mid",),
        description="ScaleRL: R0 + (A-R0)/(1+(C_mid/C)^B)"),
    Law("power", ("k", "E"), _power, lambda x, y: [(0.0, 5.0), (-20.0, 20.0)], _power_jac,
        description="Tan et al.: log(1-pass@1) = -k log X + E"),
    Law("k_of_n", ("K_max", "N0"), _k_of_n,
        lambda x, y: [(0.0, 10.0 * _ymax(y)), (_span(x)[0] / 1e3, _span(x)[1] * 1e3)],
        _k_of_n_jac, log_params=("N0",), description="Tan et al.: k(N) = K_max/(1+N0/N)"),
    Law("power_n", ("a", "b"), _power_n, _power_n_bounds, _power_n_jac, log_params=("a",),
        description="y = a N^b"),
    Law("gao_bon", ("a", "b"), _gao_bon, lambda x, y: [(-10.0, 10.0), (-10.0, 10.0)],
        _gao_bon_jac, description="Gao et al. best-of-n: d(a - b d)"),
    Law("gao_rl", ("a", "b"), _gao_rl, lambda x, y: [(-10.0, 10.0), (-10.0, 10.0)],
        _gao_rl_jac, description="Gao et al. RL: d(a - b log d)"),
    Law("saturating_exp", ("A", "y0", "tau"), _sat_exp,
        lambda x, y: [(-2.0, 2.0), (-2.0, 2.0), (_span(x)[0] / 10, _span(x)[1] * 10)],
        _sat_exp_jac, log_params=("tau",), description="A - (A-y0) exp(-x/tau)"),
)}


def get_law(name: str) -> Law:
    if name not in LAWS:
        raise KeyError(f"unknown law {name!r}; valid laws: {', '.join(LAWS)}")
    return LAWS[name]
