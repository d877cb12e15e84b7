"""Peaks and plateaus of the gold reward, for the ``rm`` section.

Gold reward per step is the share of the step's samples the rule verifier accepts
(``train/gold_reward_mean`` with a learned RM, ``train/acc_mean`` for every trial), over
``rl.prompts_per_step x rl.group_size`` samples. Per run, on the 5-step running mean:

- the peak gain: the running mean's maximum minus its first value, the step and the KL to the
  initial policy there (RM trials log ``train/kl_init``);
- the fall after it: the peak minus the last value;
- the plateau step: the first step where the running mean reaches 90% of the peak gain, and
  the training FLOPs spent by then (``compute/flops_total``); "still rising" when that step is
  in the last 5 steps (the budget ended before a plateau).

90% intervals come from a parametric bootstrap: each step's gold is redrawn as a binomial share
of its samples (the sampling noise of a step's mean), and with several seeds a seed is
resampled too. A rise (or fall) counts when its interval's lower end is above zero.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

SMOOTH = 5
PLATEAU = 0.9     # the plateau step: first reaching this share of the peak gain
N_BOOT = 400


@dataclass(frozen=True)
class Peak:
    peak: tuple[float, float, float]        # gain of the running mean at its peak (est, lo, hi)
    fall: tuple[float, float, float]        # peak minus the last value
    kl_at_peak: tuple[float, float, float]  # KL(pi || pi_0) at the peak step (nan: not logged)
    peak_step: tuple[float, float, float]
    plateau_step: tuple[float, float, float]
    plateau_flops: float                    # training FLOPs by the plateau step (the estimate)
    still_rising: bool                      # the plateau step is in the last SMOOTH steps
    seeds: int

    @property
    def shape(self) -> str:
        rose, fell = self.peak[1] > 0, self.fall[1] > 0
        if rose and fell:
            return "rose, then fell"
        if rose:
            return "rose, still rising at the end" if self.still_rising else "rose, then held"
        return "fell from the start" if fell else "no rise outside the noise"


def series(run: dict, key: str) -> tuple[np.ndarray, np.ndarray]:
    """(steps, values) of a run's metric history, in step order (empty if not logged)."""
    h = run["metrics"].get(key) or {}
    steps = sorted(h)
    return np.array(steps, int), np.array([h[s] for s in steps], float)


def smooth(v: np.ndarray) -> np.ndarray:
    """The SMOOTH-step running mean (only the full windows)."""
    k = min(SMOOTH, len(v))
    return np.convolve(v, np.ones(k) / k, mode="valid") if k else v


def _one(gold: np.ndarray, kl: np.ndarray | None) -> tuple[float, float, float, int, int]:
    """(peak gain, fall, KL at peak, index of peak, index of plateau) of one smoothed series."""
    g = smooth(gold)
    i = int(np.argmax(g))
    gain = float(g[i] - g[0])
    reach = np.nonzero(g - g[0] >= PLATEAU * gain)[0] if gain > 0 else np.array([i])
    k = float(smooth(kl)[i]) if kl is not None else float("nan")
    return gain, float(g[i] - g[-1]), k, i, int(reach[0])


def peak(runs: list[dict], gold_key: str = "train/gold_reward_mean") -> Peak | None:
    """The gold reward's peak, fall and plateau over ``runs`` (seeds of one setting)."""
    data = []
    for r in runs:
        steps, gold = series(r, gold_key)
        if len(gold) < SMOOTH + 1:
            continue
        ksteps, kl = series(r, "train/kl_init")
        kl = np.clip(kl, 0, None) if len(kl) == len(gold) else None
        n = int(float(r["params"].get("rl.prompts_per_step", 1))) * int(float(r["params"].get("rl.group_size", 1)))
        fsteps, flops = series(r, "compute/flops_total")
        data.append((steps[SMOOTH - 1:], gold, kl, n, dict(zip(fsteps.tolist(), flops.tolist()))))
    if not data:
        return None
    est = [_one(g, kl) for _, g, kl, _, _ in data]
    rng = np.random.default_rng(0)
    boot = []
    for _ in range(N_BOOT):
        picks = rng.integers(len(data), size=len(data)) if len(data) > 1 else [0]
        vals = []
        for j in picks:
            steps, g, kl, n, _ = data[j]
            vals.append(_one(rng.binomial(n, np.clip(g, 0, 1)) / n, kl))
        boot.append([np.mean([v[m] for v in vals]) if m < 3 else
                     np.mean([data[j][0][v[m]] for j, v in zip(picks, vals)]) for m in range(5)])
    boot = np.array(boot)

    def ci(m: int, point: float) -> tuple[float, float, float]:
        col = boot[:, m]
        col = col[np.isfinite(col)]
        if not len(col):
            return (point, float("nan"), float("nan"))
        return (point, float(np.percentile(col, 5)), float(np.percentile(col, 95)))

    peak_steps = [float(d[0][e[3]]) for d, e in zip(data, est)]
    plateau_steps = [float(d[0][e[4]]) for d, e in zip(data, est)]
    plateau_flops = [d[4].get(int(s), float("nan")) for d, s in zip(data, plateau_steps)]
    return Peak(ci(0, float(np.mean([e[0] for e in est]))), ci(1, float(np.mean([e[1] for e in est]))),
                ci(2, float(np.mean([e[2] for e in est]))), ci(3, float(np.mean(peak_steps))),
                ci(4, float(np.mean(plateau_steps))), float(np.mean(plateau_flops)),
                any(e[4] >= len(d[1]) - 2 * SMOOTH + 1 for d, e in zip(data, est)),
                len(data))


def fmt(v: tuple[float, float, float], signed: bool = True, digits: int = 3) -> str:
    if not np.isfinite(v[0]):
        return "n/a"
    f = f"{{:{'+' if signed else ''}.{digits}f}}"
    if not np.isfinite(v[1]):
        return f.format(v[0])
    return f"{f.format(v[0])} [{f.format(v[1])}, {f.format(v[2])}]"


def plateau_answer(rows: list[tuple[str, Peak]], rule: tuple[str, ...] = ()) -> str:
    """Which setting's gold reward plateaus first (fewest steps to 90% of its peak gain), and
    whether that is outside the other settings' intervals; then, for each rule-reward row
    (``rule``), whether it plateaus before, after or with each learned RM."""
    text = _first(rows)
    for name in rule:
        r = dict(rows)[name]
        if r.peak[1] <= 0:
            text += f" {name}: no rise outside the noise, no plateau to compare."
            continue
        rms = [(n, p) for n, p in rows if n not in rule and p.peak[1] > 0]
        later = [n for n, p in rms if p.plateau_step[2] < r.plateau_step[1]]
        earlier = [n for n, p in rms if r.plateau_step[2] < p.plateau_step[1]]
        same = [n for n, _ in rms if n not in later and n not in earlier]
        parts = [f"later than {' | '.join(later)}" if later else "",
                 f"earlier than {' | '.join(earlier)}" if earlier else "",
                 f"inside the noise of {' | '.join(same)}" if same else ""]
        text += (f" {name} plateaus at step {r.plateau_step[0]:.0f} [{r.plateau_step[1]:.0f}, "
                 f"{r.plateau_step[2]:.0f}]: " + "; ".join(p for p in parts if p) + ".")
    return text


def _first(rows: list[tuple[str, Peak]]) -> str:
    rising = [(n, p) for n, p in rows if p.peak[1] > 0]
    if len(rising) < 2:
        return ("Which plateaus first: not answerable, fewer than two settings raised gold "
                "reward outside the noise.")
    first = min(rising, key=lambda r: r[1].plateau_step[0])
    others = [(n, p) for n, p in rising if n != first[0]]
    apart = all(first[1].plateau_step[2] < p.plateau_step[1] for _, p in others)
    still = [n for n, p in others if p.still_rising]
    return (f"Plateaus first: {first[0]} (90% of its peak gain by step {first[1].plateau_step[0]:.0f}, "
            f"90% interval [{first[1].plateau_step[1]:.0f}, {first[1].plateau_step[2]:.0f}])"
            + ("; its interval ends before every other setting's begins." if apart else
               "; inside the noise: its interval overlaps another setting's.")
            + (f" Still rising when the budget ended: {', '.join(still)}." if still else ""))
