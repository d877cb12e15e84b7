"""Differences of pass@1 with bootstrap intervals, kept with their draws so that laws across
sizes (``core.fit.across_sizes``) and findings can carry the uncertainty on.

- ``paired_gain``: one set of trials before and after (step 0 vs the last eval), or RL vs its
  matched SFT control (same seeds, same eval prompts): seeds and prompts resampled together,
  exactly as ``core.metrics.paired_gain_ci`` does (same seed, same interval).
- ``group_difference``: two different groups of trials (size m vs size xs): each group's seeds
  resampled on their own, prompts resampled together when both saw the same eval prompts.
- ``quantity_difference``: two fitted quantities (A of two sizes): their bootstrap draws.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from core.fit import Interval, Quantity

LEVEL = 0.9
N_BOOT = 2000


@dataclass(frozen=True, eq=False)
class Gain:
    """A difference with its percentile interval (``level``) and bootstrap draws."""
    estimate: float
    low: float
    high: float
    draws: np.ndarray = field(repr=False)
    level: float = LEVEL
    what: str = ""                     # e.g. "over 2 seeds x 96 prompts"

    @property
    def inside_noise(self) -> bool:
        """The interval contains 0: the data do not tell the sign."""
        return self.low <= 0.0 <= self.high

    def __str__(self) -> str:
        vals = (self.estimate, self.low, self.high)
        spec = "+.3f" if max(abs(v) for v in vals) < 1 else "+.3g"   # pass@1: 3 decimals
        return "{:{s}} [{:{s}}, {:{s}}]".format(*vals, s=spec)

    def verdict(self) -> str:
        """The difference with its interval, and "inside the noise" when it contains 0."""
        return f"{self}" + (" (inside the noise)" if self.inside_noise else "")

    def quantity(self, name: str) -> Quantity:
        """As a ``core.fit.Quantity`` (identified: it is measured, not fitted)."""
        return Quantity(name, Interval(self.estimate, self.low, self.high, self.level), True,
                        draws=self.draws)


def _counts(rng: np.random.Generator, n: int, size: int, n_boot: int) -> np.ndarray:
    """How often each of ``size`` items is drawn in each of ``n_boot`` resamples of n."""
    idx = rng.integers(0, size, size=(n_boot, n))
    counts = np.zeros((n_boot, size))
    np.add.at(counts, (np.arange(n_boot)[:, None], idx), 1.0)
    return counts


def _gain(estimate: float, boots: np.ndarray, level: float, what: str) -> Gain:
    alpha = (1 - level) / 2
    return Gain(float(estimate), float(np.quantile(boots, alpha)),
                float(np.quantile(boots, 1 - alpha)), boots, level, what)


def paired_gain(before, after, level: float = LEVEL, n_boot: int = N_BOOT,
                seed: int = 0) -> Gain:
    """Mean of ``after - before`` ((seeds, prompts) arrays paired by seed and prompt) with a
    two-way bootstrap over seeds and prompts: the draws of ``paired_gain_ci``, vectorised."""
    gain = np.asarray(after, float) - np.asarray(before, float)
    gain = gain[None, :] if gain.ndim == 1 else gain
    s, p = gain.shape
    rng = np.random.default_rng(seed)
    rows = rng.integers(0, s, size=(n_boot, s))     # the same draws, in the same order,
    cols = rng.integers(0, p, size=(n_boot, p))     # as core.metrics.paired_gain_ci
    rc, cc = np.zeros((n_boot, s)), np.zeros((n_boot, p))
    np.add.at(rc, (np.arange(n_boot)[:, None], rows), 1.0)
    np.add.at(cc, (np.arange(n_boot)[:, None], cols), 1.0)
    boots = np.einsum("bi,ij,bj->b", rc, gain, cc) / (s * p)
    return _gain(gain.mean(), boots, level, f"over {s} seed(s) x {p} prompts")


def group_difference(a, b, level: float = LEVEL, n_boot: int = N_BOOT, seed: int = 0) -> Gain:
    """mean(a) - mean(b) for two groups of trials ((seeds, prompts) each). Seeds are resampled
    within each group; prompts together when both groups have the same number of them (the
    same eval prompts in the same order), else within each group."""
    a, b = np.atleast_2d(np.asarray(a, float)), np.atleast_2d(np.asarray(b, float))
    rng = np.random.default_rng(seed)
    ra, rb = _counts(rng, len(a), len(a), n_boot), _counts(rng, len(b), len(b), n_boot)
    paired = a.shape[1] == b.shape[1]
    ca = _counts(rng, a.shape[1], a.shape[1], n_boot)
    cb = ca if paired else _counts(rng, b.shape[1], b.shape[1], n_boot)
    boots = (np.einsum("bi,ij,bj->b", ra, a, ca) / a.size
             - np.einsum("bi,ij,bj->b", rb, b, cb) / b.size)
    what = (f"{len(a)} vs {len(b)} seed(s), " +
            (f"{a.shape[1]} paired prompts" if paired else "prompts resampled per group"))
    return _gain(a.mean() - b.mean(), boots, level, what)


def quantity_difference(a: Quantity, b: Quantity, level: float = LEVEL) -> Gain | None:
    """a - b for two quantities fitted independently, from their bootstrap draws (None if
    either is not identified)."""
    if not (a.identified and b.identified):
        return None
    da, db = a.draws[np.isfinite(a.draws)], b.draws[np.isfinite(b.draws)]
    n = min(len(da), len(db))
    if n == 0:
        return None
    return _gain(a.estimate - b.estimate, da[:n] - db[:n], level, "difference of fits")
