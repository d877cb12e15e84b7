"""Fit speed: the demo report's fits, old fitter against ``core.fit``, side by side.

The workload is what ``core.report.analyse`` fits on a demo grid: 3 groups (sizes), each
5 evaluations x 2 seeds, a sigmoid (R0 fixed) on pass@1 vs FLOPs and a saturating
exponential (y0 fixed) on pass@1 vs step, each with 100 bootstrap draws, plus the
sigmoid's held-out fit. The data are synthetic and shaped like the README's demo run.

"Old" is the fitter this project had before its bootstrap was made cheap, copied here so
both run in one process on the same data: scipy ``least_squares`` with numerical
Jacobians and 16 random starts for every fit and for every bootstrap refit. Because the
old path takes over a minute for the full workload, it runs ``OLD_GROUPS`` groups and the
printed old time is scaled to 3 groups (groups cost the same: same sizes, same draws).
Times are CPU seconds of this process (``time.process_time``), so other work on a shared
machine does not count; small-matrix numpy work stays on one core.
"""
from __future__ import annotations

import time

import numpy as np

N_BOOT, OLD_GROUPS = 100, 1
SIZES = {"xs": (145_344, 0.271, 0.009), "s": (752_000, 0.195, 0.051),
         "m": (4_455_168, 0.703, 0.027)}


def demo_groups(seed: int = 0) -> list[dict]:
    """Per size: steps and FLOPs tiled over 2 seeds, noisy pass@1 rising to a plateau."""
    rng = np.random.default_rng(seed)
    steps = np.arange(0, 41, 10.0)
    out = []
    for n_params, p0, gain in SIZES.values():
        flops = steps * 6 * n_params * 64 * 8 * 30
        p1 = p0 + gain * (1 - np.exp(-steps / 12)) + 0.01 * rng.standard_normal((2, 5))
        p1[:, 0] = p0 + 0.005 * rng.standard_normal(2)
        out.append({"steps": np.tile(steps, 2), "flops": np.tile(flops, 2), "y": p1.ravel(),
                    "r0": float(p1[:, 0].mean())})
    return out


# ------------------------------------------------------------------ the old fitter (copied)

def _old_fit(law, x, y, fixed, n_starts=16, seed=0):
    from scipy.optimize import least_squares
    free = [p for p in law.params if p not in fixed]
    bounds = dict(zip(law.params, law.bounds(x, y)))
    is_log = [p in law.log_params for p in free]
    lo = np.array([np.log(bounds[p][0]) if lg else bounds[p][0] for p, lg in zip(free, is_log)])
    hi = np.array([np.log(bounds[p][1]) if lg else bounds[p][1] for p, lg in zip(free, is_log)])

    def resid(theta):
        vals = {p: (np.exp(t) if lg else t) for p, t, lg in zip(free, theta, is_log)}
        r = law(x, **vals, **fixed) - y
        return np.where(np.isfinite(r), r, 1e6)

    rng, best = np.random.default_rng(seed), None
    for _ in range(n_starts):
        theta0 = lo + (hi - lo) * rng.uniform(0.05, 0.95, size=len(free))
        sol = least_squares(resid, theta0, bounds=(lo, hi), loss="huber", f_scale=0.05)
        if best is None or sol.cost < best.cost:
            best = sol
    return {p: (np.exp(t) if lg else t) for p, t, lg in zip(free, best.x, is_log)}


def _old_bootstrap(law, x, y, fixed, n_boot, seed=0):
    rng, draws = np.random.default_rng(seed), []
    for b in range(n_boot):
        idx = rng.integers(0, len(x), size=len(x))
        if len(np.unique(x[idx])) >= 2:
            draws.append(_old_fit(law, x[idx], y[idx], fixed, seed=seed + b + 1))
    return draws


def old_fits(groups: list[dict]) -> list:
    from core.fit.laws import get_law
    sig, sat = get_law("sigmoid"), get_law("saturating_exp")
    out = []
    for g in groups:
        fx_s, fx_e = {"R0": g["r0"]}, {"y0": g["r0"]}
        out.append(_old_fit(sig, g["flops"], g["y"], fx_s))
        _old_bootstrap(sig, g["flops"], g["y"], fx_s, N_BOOT)
        order = np.argsort(g["flops"])
        _old_fit(sig, g["flops"][order][:-2], g["y"][order][:-2], fx_s)
        out.append(_old_fit(sat, g["steps"], g["y"], fx_e))
        _old_bootstrap(sat, g["steps"], g["y"], fx_e, N_BOOT)
    return out


# ------------------------------------------------------------------ core.fit

def new_fits(groups: list[dict]) -> list:
    from core.fit import estimate, holdout
    out = []
    for g in groups:
        out.append(estimate("sigmoid", g["flops"], g["y"], fixed={"R0": g["r0"]}, n_boot=N_BOOT))
        holdout("sigmoid", g["flops"], g["y"], 2, fixed={"R0": g["r0"]})
        out.append(estimate("saturating_exp", g["steps"], g["y"], fixed={"y0": g["r0"]},
                            n_boot=N_BOOT))
    return out


def main() -> None:
    groups = demo_groups()
    t = time.process_time()
    new = new_fits(groups)
    t_new = time.process_time() - t
    t = time.process_time()
    old = old_fits(groups[:OLD_GROUPS])
    t_old = (time.process_time() - t) * len(groups) / OLD_GROUPS
    print(f"demo report fits (3 groups x (sigmoid + saturating_exp), {N_BOOT} bootstrap draws)")
    print(f"  old (scipy, numerical Jacobians, 16 starts per refit): {t_old:7.2f} s CPU"
          f"{'' if OLD_GROUPS == len(groups) else f'  ({OLD_GROUPS} group measured, scaled)'}")
    print(f"  core.fit (batched LM, analytic Jacobians, warm starts):  {t_new:7.2f} s CPU")
    print(f"  speed-up: {t_old / t_new:.0f}x")
    for o, a in zip(old, new[:2 * OLD_GROUPS]):
        print(f"  {a.law}: old " + ", ".join(f"{p}={v:.4g}" for p, v in o.items())
              + f" | new {a.describe()}")


if __name__ == "__main__":
    main()
