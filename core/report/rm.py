"""The ``rm`` section: reward-model over-optimisation (Gao et al. 2022).

For trials trained against a learned RM (they log ``train/kl_init``, ``train/proxy_reward_mean``
and ``train/gold_reward_mean`` per step), per (RM size, D_RM) group with seeds pooled:

- d = sqrt(KL(pi || pi_0)) per step (a 5-step running mean of the KL, which is noisy), gold
  and proxy reward relative to their first value, and ``gao_rl`` R(d) = d (a - b log d)
  fitted to each with 90% bootstrap intervals and the identification rules of ``core.fit``;
- a and b of the gold fit against RM size, one line per D_RM (identified fits only);
- the peak gold reward (of the running mean, relative to the first value) against D_RM;
- the RM's pairwise accuracy on the policy's own samples per step (``rm/onpolicy_pair_acc``:
  right vs wrong samples of one prompt, as the RM ranked them), over the first and the last 5
  steps: does the RM hold up on the moving distribution?
- the peak gold gain with its 90% interval, the KL at the peak and whether gold rose before it
  fell (``core/report/rm_peak.py``), per RM size and D_RM;
- beside them, trials of the same grid trained on the rule reward (``grid.include``, e.g.
  ``{reward.name: synthetic}``): which reward's gold plateaus first, at what compute.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from core.fit import Assessment, estimate
from core.report import draw
from core.report import rm_peak
from core.report.runs import algorithm, is_rm_run
from core.report.scaling import slug
from core.report.scaling_html import fit_metrics
from core.report.tables import Table

SMOOTH = rm_peak.SMOOTH


@dataclass(frozen=True, eq=False)
class RMGroup:
    name: str
    rm_size: str
    rm_params: float
    d_rm: int
    seeds: int
    d: list
    gold: list
    proxy: list
    peak_gold: float
    rm_acc: float
    gold_fit: Assessment
    proxy_fit: Assessment
    onpolicy_first: float = float("nan")   # RM accuracy on the policy's pairs, first 5 steps
    onpolicy_last: float = float("nan")    # ... and last 5 steps (mean over seeds)
    peak: rm_peak.Peak | None = None       # gold's peak, fall and plateau with 90% intervals


@dataclass(frozen=True, eq=False)
class RMResult:
    groups: dict[str, RMGroup]
    rule: dict[str, rm_peak.Peak]          # rule-reward trials of the same grid, by setting

    def __bool__(self) -> bool:
        return bool(self.groups)


def _group(name: str, size: str, rm_params: float, d_rm: int, runs: list[dict]) -> RMGroup:
    d, gold, proxy = [], [], []
    for r in runs:
        kl = rm_peak.smooth(np.clip(rm_peak.series(r, "train/kl_init")[1], 0, None))
        g = rm_peak.smooth(rm_peak.series(r, "train/gold_reward_mean")[1])
        p = rm_peak.smooth(rm_peak.series(r, "train/proxy_reward_mean")[1])
        n = min(len(kl), len(g), len(p))
        d.append(np.sqrt(kl[:n]))
        gold.append(g[:n] - g[0])
        proxy.append(p[:n] - p[0])
    acc = [next(iter(h.values())) for h in (r["metrics"].get("rm/heldout_acc", {}) for r in runs)
           if h]
    fits = {}
    for what, ys in (("gold", gold), ("proxy", proxy)):
        x, y = np.concatenate(d), np.concatenate(ys)
        keep = x > 0
        fits[what] = estimate("gao_rl", x[keep], y[keep], n_boot=200, seed=0)
    return RMGroup(name, size, rm_params, d_rm, len(runs), d, gold, proxy,
                   float(np.mean([g.max() for g in gold])) if gold else float("nan"),
                   float(np.mean(acc)) if acc else float("nan"), fits["gold"], fits["proxy"],
                   *_onpolicy(runs), rm_peak.peak(runs))


def _onpolicy(runs: list[dict]) -> tuple[float, float]:
    """Mean RM accuracy on the policy's own pairs over the first and the last SMOOTH steps."""
    series = [rm_peak.series(r, "rm/onpolicy_pair_acc")[1] for r in runs if r["metrics"].get("rm/onpolicy_pair_acc")]
    if not series:
        return float("nan"), float("nan")
    return (float(np.mean([s[:SMOOTH].mean() for s in series])),
            float(np.mean([s[-SMOOTH:].mean() for s in series])))


def analyse(runs: list[dict], grid) -> RMResult:
    groups: dict[tuple, list[dict]] = {}
    rule: dict[str, list[dict]] = {}
    for r in runs:
        if not is_rm_run(r) and algorithm(r) == "grpo" and "train/acc_mean" in r["metrics"]:
            rule.setdefault(f"rule reward {r['params'].get('reward.name', '?')}", []).append(r)
        if is_rm_run(r):
            size = r["params"].get("reward.rm.size", "?")
            d_rm = int(float(r["params"].get("reward.rm.d_rm", 0)))
            rm_params = float(r["tags"].get("rm_params") or "nan")
            groups.setdefault((rm_params, size, d_rm), []).append(r)
    res = {f"rm={size}, d_rm={d_rm}": _group(f"rm={size}, d_rm={d_rm}", size, p, d_rm, members)
           for (p, size, d_rm), members in sorted(groups.items())}
    peaks = {name: rm_peak.peak(members, "train/acc_mean") for name, members in rule.items()}
    return RMResult(res, {k: v for k, v in peaks.items() if v is not None} if res else {})


def _reward_vs_d(res: dict[str, RMGroup], out: Path, made: list) -> None:
    plt = draw.pyplot()
    colors = draw.palette(res, "plasma")
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    for ax, what in zip(axes, ("gold", "proxy")):
        for name, g in res.items():
            fit = getattr(g, f"{what}_fit")
            label = f"{name}: {draw.legend_params(fit, ('a', 'b'))}"
            for i, (d, y) in enumerate(zip(g.d, getattr(g, what))):
                ax.plot(d, y, ".", color=colors[name], alpha=0.5, gid="data",
                        label=label if i == 0 else None)
            draw.draw_fit(ax, fit, None, colors[name])
        ax.set(xlabel="d = sqrt(KL(pi || pi_0))", ylabel=f"{what} reward - initial",
               title=f"{what.capitalize()} reward vs d (lines: d(a - b log d), identified fits)")
        ax.legend(fontsize=7)
    bad = [f"{n} {w}: {'; '.join(getattr(g, w + '_fit').reasons)}" for n, g in res.items()
           for w in ("gold", "proxy") if not getattr(g, w + "_fit").identified]
    draw.save(fig, out, "rm_reward_vs_d.png",
              "Gold (rule verifier) and proxy (learned RM) reward against d = sqrt(KL to the "
              "initial policy), per RM size and D_RM, seeds pooled, with Gao et al.'s RL curve "
              "R(d) = d(a - b log d) where identified, over the data's range."
              + (" Not identified, data only: " + " | ".join(bad) + "." if bad else ""), made)


def _scaling(res: dict[str, RMGroup], out: Path, made: list) -> None:
    plt = draw.pyplot()
    fig, axes = plt.subplots(1, 3, figsize=(14, 4))
    for ax, param in zip(axes[:2], ("a", "b")):
        for d_rm in sorted({g.d_rm for g in res.values()}):
            pts = [g for g in res.values() if g.d_rm == d_rm and g.gold_fit.identified]
            for i, g in enumerate(pts):
                draw.errorbar(ax, g.rm_params, g.gold_fit.intervals[param],
                              f"C{d_rm % 10}", f"D_RM={d_rm}" if i == 0 else None)
        ax.set_xscale("log")
        ax.set(xlabel="RM parameters", ylabel=param,
               title=f"gold fit: {param} vs RM size (identified, 90% CI)")
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=7)
    ax = axes[2]
    for params, size in sorted({(g.rm_params, g.rm_size) for g in res.values()}):
        pts = sorted((g.d_rm, g.peak.peak if g.peak else (g.peak_gold,) * 3)
                     for g in res.values() if g.rm_size == size)
        x, y = [p[0] for p in pts], np.array([p[1] for p in pts], float)
        ax.errorbar(x, y[:, 0], yerr=np.abs(y[:, 1:].T - y[:, 0]), fmt="o-", capsize=3,
                    label=f"RM {size} ({draw.short(params)} params)")
    ax.set_xscale("log")
    ax.set(xlabel="D_RM (preference pairs)", ylabel="peak gold reward - initial",
           title="Peak gold gain vs D_RM, per RM size (90% CI)")
    ax.legend(fontsize=7)
    draw.save(fig, out, "rm_scaling.png", "Gold-reward fit parameters a and b against RM size "
              "(one colour per D_RM; identified fits only), and the peak gold reward against "
              "D_RM (one line per RM size).", made)


def plots(res: RMResult, out: Path) -> list[tuple[str, str]]:
    made: list = []
    if res:
        _reward_vs_d(res.groups, out, made)
        _scaling(res.groups, out, made)
    return made


def table(res: dict[str, RMGroup]) -> Table:
    rows = tuple((name, draw.short(g.rm_params), str(g.seeds), f"{g.rm_acc:.3f}",
                  f"{g.onpolicy_first:.3f} -> {g.onpolicy_last:.3f}",
                  rm_peak.fmt(g.peak.peak) if g.peak else "n/a",
                  rm_peak.fmt(g.peak.kl_at_peak, signed=False) if g.peak else "n/a",
                  g.peak.shape if g.peak else "n/a",
                  g.gold_fit.describe(), g.proxy_fit.describe())
                 for name, g in res.items())
    return Table(("RM, D_RM", "RM params", "seeds", "RM held-out pair accuracy",
                  f"RM accuracy on the policy's pairs, first -> last {SMOOTH} steps",
                  "peak gold gain [90% CI]", "KL(pi || pi_0) at the peak [90% CI]",
                  "gold over training", "gold fit d(a - b log d)", "proxy fit"), rows,
                 "Gold = the rule verifier's acceptance of the policy's training samples, as a "
                 f"{SMOOTH}-step running mean, relative to its first value; a rise or fall counts "
                 "when its 90% interval excludes 0.")


def plateau_table(res: RMResult) -> Table:
    """Rule reward and learned RMs side by side: peak, fall and plateau of gold reward."""
    rows = [(name, p) for name, p in res.rule.items()]
    rows += [(name, g.peak) for name, g in res.groups.items() if g.peak is not None]
    body = tuple((name, str(p.seeds), rm_peak.fmt(p.peak), rm_peak.fmt(p.fall),
                  rm_peak.fmt(p.plateau_step, signed=False, digits=0),
                  f"{p.plateau_flops:.3g}" if np.isfinite(p.plateau_flops) else "n/a", p.shape)
                 for name, p in rows)
    return Table(("reward", "seeds", "peak gold gain [90% CI]", "fall after the peak [90% CI]",
                  f"plateau step ({rm_peak.PLATEAU:.0%} of the peak gain) [90% CI]",
                  "training FLOPs by then", "gold over training"), body,
                 rm_peak.plateau_answer(rows, tuple(res.rule)))


def html(res: RMResult) -> str:
    if not res:
        return ""
    out = table(res.groups).html()
    if res.rule:
        out += "<h3>Rule reward vs learned RMs: which plateaus first?</h3>" + plateau_table(res).html()
    return out


def tables(res: RMResult) -> dict[str, str]:
    if not res:
        return {}
    return {"rm": table(res.groups).markdown(), "rm_plateau": plateau_table(res).markdown()}


def metrics(res: RMResult) -> dict[str, float | str]:
    out: dict[str, float | str] = {}
    for name, g in res.groups.items():
        for what in ("gold", "proxy"):
            out.update(fit_metrics(f"rm/{slug(name)}/{what}", getattr(g, f"{what}_fit"), None))
        if np.isfinite(g.peak_gold):
            out[f"rm/{slug(name)}/peak_gold"] = g.peak_gold
        if g.peak is not None:
            out[f"rm/{slug(name)}/kl_at_peak"] = g.peak.kl_at_peak[0]
            out[f"rm/{slug(name)}/plateau_step"] = g.peak.plateau_step[0]
    return out
