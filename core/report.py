"""The grid report: read runs back from MLflow, fit laws, draw plots, write report.html.

``python -m core.report --run-id PARENT_ID`` (or ``grid=NAME`` for that grid's newest run);
the grid driver calls ``write_report`` at the end of every grid. Output goes to
``runs/<grid>/<stamp>/report/`` and is logged as artifacts on the parent run.
"""
from __future__ import annotations

import html
import json
import sys
from collections import defaultdict
from pathlib import Path

import numpy as np

from core.fit import bootstrap, fit, holdout_error
from core.metrics import paired_gain_ci


# ------------------------------------------------------------------ reading runs back

def load_runs(uri: str, parent_id: str) -> tuple[dict, list[dict]]:
    """(parent run info, children) with each child's metric histories as {key: {step: v}}."""
    from mlflow.tracking import MlflowClient
    client = MlflowClient(tracking_uri=uri)
    parent = client.get_run(parent_id)
    children = client.search_runs([parent.info.experiment_id],
                                  filter_string=f"tags.mlflow.parentRunId = '{parent_id}'")
    runs = []
    for child in children:
        hist = {}
        for key in child.data.metrics:
            hist[key] = {m.step: m.value for m in client.get_metric_history(child.info.run_id, key)}
        runs.append({"id": child.info.run_id, "tags": child.data.tags,
                     "params": child.data.params, "metrics": hist,
                     "size": child.data.tags.get("model_size", "?"),
                     "group": _group_key(child.data.tags),
                     "n_params": float(child.data.tags.get("params_count") or "nan"),
                     "seed": child.data.params.get("seed", "0")})
    return {"id": parent_id, "tags": parent.data.tags}, runs


def _group_key(tags: dict) -> str:
    """Trials that differ only in their seed form one group (one curve with a seed band):
    ``model=s`` in a model grid, ``data.d_sft=4000, data.d_rl=256`` in a data grid."""
    axes = {k[len("axis."):]: v for k, v in tags.items() if k.startswith("axis.")}
    key = ", ".join(f"{k}={v}" for k, v in axes.items() if k != "seed")
    return key or f"model={tags.get('model_size', '?')}"


def by_size(runs: list[dict]) -> dict[str, list[dict]]:
    """Runs grouped by their non-seed axis values, ordered by model size then name."""
    groups = defaultdict(list)
    for r in sorted(runs, key=lambda r: (r["n_params"], r["group"], r["seed"])):
        groups[r["group"]].append(r)
    return dict(groups)


def curve(runs: list[dict], key: str, x_key: str | None = None):
    """Steps (or x_key values) present in every run, the per-run values, (x, values[runs, x])."""
    steps = sorted(set.intersection(*(set(r["metrics"].get(key, {})) for r in runs)))
    vals = np.array([[r["metrics"][key][s] for s in steps] for r in runs])
    if x_key is None:
        return np.array(steps, float), vals
    xs = np.array([[r["metrics"][x_key].get(s, np.nan) for s in steps] for r in runs])
    return np.nanmean(xs, axis=0), vals


# ------------------------------------------------------------------ analysis

def analyse(runs: list[dict]) -> dict:
    """Fits and gains per size: sigmoid on pass@1 vs FLOPs, saturating exp vs step."""
    out = {"sizes": {}}
    for size, group in by_size(runs).items():
        res: dict = {"n_params": group[0]["n_params"], "seeds": len(group)}
        steps, p1 = curve(group, "val/pass_at_1")
        flops, _ = curve(group, "val/pass_at_1", "compute/flops_total")
        res["steps"], res["pass1"], res["flops"] = steps, p1, flops
        r0 = float(p1[:, 0].mean())
        x_c, y_c = np.tile(flops, len(group)), p1.ravel()
        try:
            sig = fit("sigmoid", x_c, y_c, fixed={"R0": r0})
            res["sigmoid"] = sig
            res["sigmoid_ci"] = bootstrap(sig, n_boot=100, seed=0, fixed={"R0": r0})
            if len(steps) >= 5:
                _, res["sigmoid_holdout"] = holdout_error("sigmoid", x_c, y_c, len(group) * 1,
                                                          fixed={"R0": r0})
        except ValueError as exc:
            res["sigmoid_error"] = str(exc)
        try:
            sat = fit("saturating_exp", np.tile(steps, len(group)), p1.ravel(),
                      fixed={"y0": r0})
            res["satexp"] = sat
            res["satexp_ci"] = bootstrap(sat, n_boot=100, seed=0, fixed={"y0": r0})
        except ValueError as exc:
            res["satexp_error"] = str(exc)
        res["gain"] = _gain(group)
        out["sizes"][size] = res
    return out


def _gain(group: list[dict]):
    """Seed-averaged pass@1 gain (last eval - step 0) with a 90% bootstrap interval over
    eval prompts and seeds, from the per-prompt results each trial wrote."""
    before, after = [], []
    for r in group:
        evals = sorted(Path(r["tags"].get("trial_dir", "/nonexistent"), "evals").glob("step_*.json"))
        if len(evals) < 2:
            return None
        before.append(json.loads(evals[0].read_text())["pass_at_1"])
        after.append(json.loads(evals[-1].read_text())["pass_at_1"])
    return paired_gain_ci(np.array(before), np.array(after), level=0.9, seed=0)


# ------------------------------------------------------------------ plots

def plots(runs: list[dict], analysis: dict, out: Path) -> list[tuple[str, str]]:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    groups, sizes = by_size(runs), analysis["sizes"]
    colors = dict(zip(groups, plt.cm.viridis(np.linspace(0.1, 0.85, len(groups)))))
    made = []

    def label(group):
        return f"{group} ({sizes[group]['n_params'] / 1e6:.2f}M params)"

    def save(fig, name, caption):
        fig.tight_layout()
        fig.savefig(out / name, dpi=110)
        plt.close(fig)
        made.append((name, caption))

    # 1. pass@1 vs step, seed bands
    fig, ax = plt.subplots(figsize=(6, 4))
    for size, res in sizes.items():
        m = res["pass1"].mean(0)
        ax.plot(res["steps"], m, "-o", color=colors[size], label=label(size), ms=3)
        ax.fill_between(res["steps"], res["pass1"].min(0), res["pass1"].max(0),
                        color=colors[size], alpha=0.2)
    ax.set(xlabel="RL step", ylabel="pass@1 (eval, mean over seeds)", title="Pass@1 vs step")
    ax.legend()
    save(fig, "pass1_vs_step.png", "Pass@1 against RL step; band: min-max over seeds.")

    # 2. pass@k vs k at several steps, one panel per size
    fig, axes = plt.subplots(1, len(groups), figsize=(4 * len(groups), 3.6), squeeze=False)
    for ax, (size, group) in zip(axes[0], groups.items()):
        ks = sorted({int(k.rsplit("_", 1)[1]) for k in group[0]["metrics"]
                     if k.startswith("val/pass_at_")})
        steps = sizes[size]["steps"]
        for j, s in enumerate(sorted({steps[0], steps[len(steps) // 2], steps[-1]})):
            vals = [np.mean([r["metrics"][f"val/pass_at_{k}"][s] for r in group]) for k in ks]
            ax.plot(ks, vals, "-o", ms=3, label=f"step {int(s)}",
                    color=plt.cm.plasma(0.15 + 0.35 * j))
        ax.set_xscale("log", base=2)
        ax.set(xlabel="k (samples)", ylabel="pass@k", title=f"Pass@k vs k, {label(size)}")
        ax.legend(fontsize=8)
    save(fig, "passk_vs_k.png", "Unbiased pass@k against k at the first, middle and last step.")

    # 3. creativity index vs step
    fig, ax = plt.subplots(figsize=(6, 4))
    for size, group in groups.items():
        steps, ci = curve(group, "val/creativity_index")
        ax.plot(steps, ci.mean(0), "-o", ms=3, color=colors[size], label=label(size))
    ax.set(xlabel="RL step", ylabel="creativity index = pass@k_max",
           title="Creativity index (pass@k_max) vs step")
    ax.legend()
    save(fig, "creativity_vs_step.png", "Creativity index (pass@k_max) against RL step.")

    # 4. pass@1 vs cumulative FLOPs with the fitted sigmoid
    fig, ax = plt.subplots(figsize=(6, 4))
    for size, res in sizes.items():
        for row in res["pass1"]:
            ax.plot(res["flops"][1:], row[1:], "o", ms=3, color=colors[size], alpha=0.6)
        if "sigmoid" in res:
            xs = np.logspace(np.log10(res["flops"][1]), np.log10(res["flops"][-1] * 3), 100)
            p = res["sigmoid"].params
            ax.plot(xs, res["sigmoid"].predict(xs), "-", color=colors[size],
                    label=f"{label(size)}: A={p['A']:.2f} B={p['B']:.2f}")
    ax.set_xscale("log")
    ax.set(xlabel="cumulative training compute (FLOPs)", ylabel="pass@1",
           title="Pass@1 vs compute, ScaleRL sigmoid fits")
    ax.legend(fontsize=8)
    save(fig, "pass1_vs_flops.png", "Pass@1 against cumulative RL FLOPs (rollout + reference "
         "+ update) with the fitted sigmoid R0 + (A-R0)/(1+(C_mid/C)^B) per size.")

    # 5. pass@1 gained per FLOP
    fig, ax = plt.subplots(figsize=(6, 4))
    for size, res in sizes.items():
        gain = res["pass1"].mean(0)[1:] - res["pass1"].mean(0)[0]
        ax.plot(res["steps"][1:], gain / res["flops"][1:], "-o", ms=3, color=colors[size],
                label=label(size))
    ax.axhline(0, color="grey", lw=0.8)
    ax.set(xlabel="RL step", ylabel="pass@1 gain per FLOP (1/FLOP)",
           title="Pass@1 gained per FLOP")
    ax.legend()
    save(fig, "gain_per_flop.png", "(pass@1(t) - pass@1(0)) / cumulative FLOPs(t).")

    # 6. steps to 90% of the fitted asymptote vs N
    fig, ax = plt.subplots(figsize=(6, 4))
    for size, res in sizes.items():
        if "satexp" in res:
            t90 = res["satexp"].params["tau"] * np.log(10)
            ci = res["satexp_ci"]["tau"]
            lo, hi = ci.low * np.log(10), ci.high * np.log(10)
            yerr = [[max(0.0, t90 - lo) if np.isfinite(lo) else 0.0],
                    [max(0.0, hi - t90) if np.isfinite(hi) else 0.0]]
            ax.errorbar([res["n_params"]], [t90], yerr=yerr, fmt="o", color=colors[size],
                        label=label(size), capsize=3)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set(xlabel="policy parameters N", ylabel="RL steps to 90% of asymptote",
           title="Sample efficiency vs model size")
    ax.legend()
    save(fig, "steps_to_90_vs_n.png", "Steps to reach 90% of each size's fitted asymptote "
         "(saturating exponential, tau ln 10) with 90% bootstrap intervals.")
    return made


# ------------------------------------------------------------------ html

def _fmt_ci(ci) -> str:
    return f"{ci.estimate:.3g} [{ci.low:.3g}, {ci.high:.3g}]"


def render_html(parent: dict, analysis: dict, figures: list[tuple[str, str]]) -> str:
    rows = []
    for size, res in analysis["sizes"].items():
        g = res["gain"]
        gain = f"{g[0]:+.3f} [{g[1]:+.3f}, {g[2]:+.3f}]" if g else "n/a"
        rows.append(f"<tr><td>{size}</td><td>{res['n_params']:,.0f}</td><td>{res['seeds']}</td>"
                    f"<td>{res['pass1'][:, 0].mean():.3f}</td><td>{res['pass1'][:, -1].mean():.3f}"
                    f"</td><td>{gain}</td></tr>")
    fits = []
    for size, res in analysis["sizes"].items():
        for law, key in (("sigmoid (pass@1 vs FLOPs)", "sigmoid"),
                         ("saturating exp (pass@1 vs step)", "satexp")):
            if key not in res:
                fits.append(f"<tr><td>{size}</td><td>{law}</td><td colspan=3>"
                            f"{html.escape(res.get(key + '_error', 'not fitted'))}</td></tr>")
                continue
            ci = res[f"{key}_ci"]
            params = "<br>".join(
                f"{p} = {_fmt_ci(ci[p])}" + (" <b>(at bound: not identified)</b>"
                                             if p in res[key].at_bound else "")
                for p in res[key].params)
            hold = res.get(f"{key}_holdout")
            fits.append(f"<tr><td>{size}</td><td>{law}</td><td>{params}</td>"
                        f"<td>{res[key].rmse:.4f}</td><td>{'' if hold is None else f'{hold:.4f}'}"
                        f"</td></tr>")
    figs = "".join(f"<figure{' class=wide' if n.startswith('passk') else ''}><img src='{n}' "
                   f"alt='{n}'><figcaption>{html.escape(c)}</figcaption></figure>"
                   for n, c in figures)
    grid = html.escape(parent["tags"].get("grid", "?"))
    return f"""<!doctype html><html><head><meta charset="utf-8"><title>grid {grid}</title>
<style>body{{font-family:sans-serif;max-width:1100px;margin:2em auto}} table{{border-collapse:
collapse}} td,th{{border:1px solid #ccc;padding:4px 8px;text-align:right}} figure{{display:
inline-block;margin:1em}} img{{max-width:520px}} figure.wide img{{max-width:100%}}</style></head><body>
<h1>Grid <code>{grid}</code></h1>
<p>MLflow parent run <code>{parent['id']}</code>; git commit
<code>{html.escape(parent['tags'].get('git_commit', '?'))}</code>. "Creativity index" here is
pass@k_max (not ProRL's n-gram measure). pass@k uses the unbiased estimator of Chen et al.</p>
<h2>Pass@1 before and after RL</h2>
<table><tr><th>trials (seeds pooled)</th><th>params</th><th>seeds</th><th>pass@1 step 0</th><th>pass@1 last</th>
<th>gain [90% CI over prompts and seeds]</th></tr>{''.join(rows)}</table>
<h2>Fitted laws (90% bootstrap intervals)</h2>
<table><tr><th>trials</th><th>law</th><th>parameters</th><th>RMSE</th>
<th>held-out error (last eval step)</th></tr>{''.join(fits)}</table>
<h2>Plots</h2>{figs}</body></html>"""


def write_report(uri: str, parent_id: str, run_dir: Path) -> Path:
    parent, runs = load_runs(uri, parent_id)
    out = Path(run_dir) / "report"
    out.mkdir(parents=True, exist_ok=True)
    if not runs:
        raise RuntimeError(f"parent run {parent_id} has no child runs to report on")
    analysis = analyse(runs)
    figures = plots(runs, analysis, out)
    from core.report_rm import analyse_rm, html_rm, plots_rm
    rm = analyse_rm(runs)
    figures += plots_rm(rm, out)
    page = render_html(parent, analysis, figures).replace("<h2>Plots</h2>", html_rm(rm) + "<h2>Plots</h2>")
    (out / "report.html").write_text(page)
    from mlflow.tracking import MlflowClient
    MlflowClient(tracking_uri=uri).log_artifacts(parent_id, str(out), artifact_path="report")
    return out / "report.html"


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    from core.config import CONFIG_DIR
    run_id = next((a.split("=", 1)[1] for a in argv if a.startswith("--run-id=")), None)
    if "--run-id" in argv:
        run_id = argv[argv.index("--run-id") + 1]
    grid = next((a.split("=", 1)[1] for a in argv if a.startswith("grid=")), None)
    runs_root = next((a.split("=", 1)[1] for a in argv if a.startswith("output_dir=")), "runs")
    root = Path(runs_root) if Path(runs_root).is_absolute() else CONFIG_DIR.parent / runs_root
    candidates = sorted(root.glob(f"{grid or '*'}/*/grid.json"))
    states = [(p.parent, json.loads(p.read_text())) for p in candidates]
    if run_id:
        states = [s for s in states if s[1]["parent_run_id"] == run_id]
    if not states:
        print(f"error: no grid run found under {root} for "
              f"{'--run-id ' + run_id if run_id else 'grid=' + str(grid)}; "
              "usage: python -m core.report grid=NAME | --run-id ID [output_dir=DIR]",
              file=sys.stderr)
        return 2
    run_dir, state = states[-1]
    print(write_report(state["tracking_uri"], state["parent_run_id"], run_dir))
    return 0


if __name__ == "__main__":
    sys.exit(main())
