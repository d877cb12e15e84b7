"""Law forms, by name. Each law maps x (compute, data, steps, sqrt-KL, model size) to y.

- ``sigmoid`` (ScaleRL, Khatri et al. 2025): R(C) = R0 + (A - R0) / (1 + (C_mid / C)^B)
- ``power`` (Tan et al. 2025): log(1 - pass@1) = -k log X + E, i.e. y = 1 - exp(E) X^-k
- ``k_of_n`` (Tan et al. 2025, across sizes): k(N) = K_max / (1 + N0 / N)
- ``gao_bon`` (Gao et al. 2022, best-of-n): R(d) = d (a - b d), d = sqrt(KL)
- ``gao_rl`` (Gao et al. 2022, RL): R(d) = d (a - b log d)
- ``saturating_exp`` (steps to convergence): y = A - (A - y0) exp(-x / tau)
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
    log_params: tuple[str, ...] = ()
    description: str = ""

    def __call__(self, x, **params) -> np.ndarray:
        return self.fn(np.asarray(x, dtype=float), *(params[p] for p in self.params))


def _sigmoid(c, a, b, c_mid, r0):
    with np.errstate(divide="ignore", over="ignore"):   # C = 0 gives R0, as the limit does
        return r0 + (a - r0) / (1.0 + (c_mid / c) ** b)


def _power(x, k, e):
    return 1.0 - np.exp(e) * x ** (-k)


def _k_of_n(n, k_max, n0):
    return k_max / (1.0 + n0 / n)


def _gao_bon(d, a, b):
    return d * (a - b * d)


def _gao_rl(d, a, b):
    return d * (a - b * np.log(d))


def _sat_exp(x, a, y0, tau):
    return a - (a - y0) * np.exp(-x / tau)


def _span(x):
    x = np.asarray(x, float)
    return max(float(np.min(x[x > 0])) if np.any(x > 0) else 1e-12, 1e-300), float(np.max(x))


LAWS: dict[str, Law] = {law.name: law for law in (
    Law("sigmoid", ("A", "B", "C_mid", "R0"), _sigmoid,
        lambda x, y: [(0.0, 1.0), (0.05, 10.0), (_span(x)[0] / 100, _span(x)[1] * 100),
                      (0.0, 1.0)],
        log_params=("C_mid",), description="ScaleRL: R0 + (A-R0)/(1+(C_mid/C)^B)"),
    Law("power", ("k", "E"), _power, lambda x, y: [(0.0, 5.0), (-20.0, 20.0)],
        description="Tan et al.: log(1-pass@1) = -k log X + E"),
    Law("k_of_n", ("K_max", "N0"), _k_of_n,
        lambda x, y: [(0.0, 10.0 * max(1e-9, float(np.max(y)))), (_span(x)[0] / 1e3, _span(x)[1] * 1e3)],
        log_params=("N0",), description="Tan et al.: k(N) = K_max/(1+N0/N)"),
    Law("gao_bon", ("a", "b"), _gao_bon, lambda x, y: [(-10.0, 10.0), (-10.0, 10.0)],
        description="Gao et al. best-of-n: d(a - b d)"),
    Law("gao_rl", ("a", "b"), _gao_rl, lambda x, y: [(-10.0, 10.0), (-10.0, 10.0)],
        description="Gao et al. RL: d(a - b log d)"),
    Law("saturating_exp", ("A", "y0", "tau"), _sat_exp,
        lambda x, y: [(-2.0, 2.0), (-2.0, 2.0), (_span(x)[0] / 10, _span(x)[1] * 10)],
        log_params=("tau",), description="A - (A-y0) exp(-x/tau)"),
)}


def get_law(name: str) -> Law:
    if name not in LAWS:
        raise KeyError(f"unknown law {name!r}; valid laws: {', '.join(LAWS)}")
    return LAWS[name]
