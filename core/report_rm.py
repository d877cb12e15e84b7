"""The reward-model over-optimisation part of a grid report (Gao et al. 2022).

For trials trained against a learned RM (they log ``train/kl_init``, ``train/proxy_reward_mean``
and ``train/gold_reward_mean`` per step), per (RM size, D_RM) group with seeds pooled:

- d = sqrt(KL(pi || pi_0)) per step (a 5-step running mean of the KL, which is noisy), gold
  and proxy reward relative to their step-1 values, and ``gao_rl`` R(d) = d (a - b log d)
  fitted to each with 90% bootstrap intervals;
- a and b of the gold fit against RM size and against D_RM;
- peak gold reward (of the 5-step running mean, relative to step 1) against RM size and D_RM.
"""
from __future__ import annotations

import html
from collections import defaultdict

import numpy as np

SMOOTH = 5


def is_rm_run(run: dict) -> bool:
    return all(k in run["metrics"] for k in ("train/kl_init", "train/gold_reward_mean",
                                            "train/proxy_reward_mean"))


def _smooth(v: np.ndarray) -> np.ndarray:
    k = min(SMOOTH, len(v))
    return np.convolve(v, np.ones(k) / k, mode="valid")


def _series(run: dict, key: str) -> np.ndarray:
    h = run["metrics"][key]
    return np.array([h[s] for s in sorted(h)], float)


def analyse_rm(runs: list[dict]) -> dict:
    from core.fit.bootstrap import bootstrap
    from core.fit.fit import fit
    groups: dict[tuple, list[dict]] = defaultdict(list)
    for r in runs:
        if is_rm_run(r):
            size, d_rm = r["params"].get("reward.rm.size", "?"), int(float(r["params"].get("reward.rm.d_rm", 0)))
            groups[(float(r["tags"].get("rm_params") or "nan"), size, d_rm)].append(r)
    out = {}
    for (rm_params, size, d_rm), group in sorted(groups.items()):
        res: dict = {"rm_size": size, "rm_params": rm_params, "d_rm": d_rm, "seeds": len(group),
                     "d": [], "gold": [], "proxy": []}
        for r in group:
            kl = _smooth(np.clip(_series(r, "train/kl_init"), 0, None))
            gold, proxy = _smooth(_series(r, "train/gold_reward_mean")), _smooth(_series(r, "train/proxy_reward_mean"))
            res["d"].append(np.sqrt(kl))
            res["gold"].append(gold - gold[0])
            res["proxy"].append(proxy - proxy[0])
        res["peak_gold"] = float(np.mean([g.max() for g in res["gold"]]))
        acc = [r["metrics"].get("rm/heldout_acc", {}) for r in group]
        res["rm_acc"] = float(np.mean([next(iter(a.values())) for a in acc if a])) if any(acc) else float("nan")
        d = np.concatenate(res["d"])
        for what in ("gold", "proxy"):
            y = np.concatenate(res[what])
            keep = d > 0
            try:
                f = fit("gao_rl", d[keep], y[keep])
                res[f"{what}_fit"], res[f"{what}_ci"] = f, bootstrap(f, n_boot=100, seed=0)
            except ValueError as exc:
                res[f"{what}_error"] = str(exc)
        out[f"rm={size}, d_rm={d_rm}"] = res
    return out


def plots_rm(analysis: dict, out) -> list[tuple[str, str]]:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    made = []
    if not analysis:
        return made
    colors = dict(zip(analysis, plt.cm.plasma(np.linspace(0.05, 0.85, len(analysis)))))

    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for ax, what in zip(axes, ("gold", "proxy")):
        for name, res in analysis.items():
            for i, (d, y) in enumerate(zip(res["d"], res[what])):
                ax.plot(d, y, ".", color=colors[name], alpha=0.5, label=name if i == 0 else None)
            if f"{what}_fit" in res:
                f = res[f"{what}_fit"]
                grid = np.linspace(max(1e-3, np.concatenate(res["d"]).min()), np.concatenate(res["d"]).max(), 100)
                ax.plot(grid, f.predict(grid), "-", color=colors[name])
        ax.set(xlabel="d = sqrt(KL(pi || pi_0))", ylabel=f"{what} reward - initial",
               title=f"{what.capitalize()} reward vs d (lines: fitted d(a - b log d))")
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out / "rm_reward_vs_d.png", dpi=110)
    plt.close(fig)
    made.append(("rm_reward_vs_d.png", "Gold (rule verifier) and proxy (learned RM) reward against "
                 "d = sqrt(KL to the initial policy), per RM size and D_RM, seeds pooled, with fitted "
                 "Gao et al. RL curves R(d) = d(a - b log d)."))

    fig, axes = plt.subplots(1, 3, figsize=(14, 4))
    sizes = sorted({(r["rm_params"], r["rm_size"]) for r in analysis.values()})
    drms = sorted({r["d_rm"] for r in analysis.values()})
    for j, param in enumerate(("a", "b")):
        ax = axes[j]
        for d_rm in drms:
            pts = [(r["rm_params"], r["gold_ci"][param]) for r in analysis.values()
                   if r["d_rm"] == d_rm and "gold_ci" in r]
            if pts:
                x = [p[0] for p in pts]
                y = [p[1].estimate for p in pts]
                err = [[max(0, p[1].estimate - p[1].low) for p in pts], [max(0, p[1].high - p[1].estimate) for p in pts]]
                ax.errorbar(x, y, yerr=err, fmt="o-", capsize=3, label=f"D_RM={d_rm}")
        ax.set_xscale("log")
        ax.set(xlabel="RM parameters", ylabel=param, title=f"gold fit: {param} vs RM size (90% CI)")
        ax.legend(fontsize=7)
    ax = axes[2]
    for params, size in sizes:
        pts = sorted((r["d_rm"], r["peak_gold"]) for r in analysis.values() if r["rm_size"] == size)
        ax.plot([p[0] for p in pts], [p[1] for p in pts], "o-", label=f"RM {size} ({params / 1e6:.2f}M)")
    ax.set_xscale("log")
    ax.set(xlabel="D_RM (preference pairs)", ylabel="peak gold reward - initial",
           title="Peak gold reward vs D_RM, per RM size")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out / "rm_scaling.png", dpi=110)
    plt.close(fig)
    made.append(("rm_scaling.png", "Gold-reward fit parameters a and b against RM size (one line per "
                 "D_RM), and the peak gold reward against D_RM (one line per RM size)."))
    return made


def html_rm(analysis: dict) -> str:
    if not analysis:
        return ""
    rows = []
    for name, r in analysis.items():
        def fmt(what):
            if f"{what}_fit" not in r:
                return html.escape(r.get(f"{what}_error", "not fitted"))
            ci = r[f"{what}_ci"]
            return "<br>".join(f"{p} = {ci[p].estimate:.3g} [{ci[p].low:.3g}, {ci[p].high:.3g}]" for p in ci)
        rows.append(f"<tr><td>{html.escape(name)}</td><td>{r['rm_params']:,.0f}</td><td>{r['seeds']}</td>"
                    f"<td>{r['rm_acc']:.3f}</td><td>{r['peak_gold']:+.3f}</td><td>{fmt('gold')}</td>"
                    f"<td>{fmt('proxy')}</td></tr>")
    return ("<h2>Reward-model over-optimisation (Gao et al.)</h2><table><tr><th>RM, D_RM</th>"
            "<th>RM params</th><th>seeds</th><th>RM held-out pair accuracy</th><th>peak gold gain</th>"
            "<th>gold fit d(a - b log d)</th><th>proxy fit</th></tr>" + "".join(rows) + "</table>")
