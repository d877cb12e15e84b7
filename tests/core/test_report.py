"""The report's sections on synthetic runs (the structure ``core.report.runs.load_runs``
returns; no MLflow): identification and drawing rules, the grid's axis, empty grids,
matched SFT controls, findings and tables."""
import json
import zlib

import numpy as np
import pytest

from core.report import build, grid_view
from core.report.runs import GridView
from core.report.scaling import slug
from core.report.stats import group_difference, paired_gain

SIZES = {"xs": 1.5e5, "s": 7.5e5, "m": 4.5e6, "l": 2.0e7}


def make_run(values: dict, *, steps=range(0, 41, 10), a=0.6, r0=0.3, tau=12.0, seed=0,
             n_prompts=48, flops_per_step=1e12, noise=0.01, gain_per_prompt=None,
             algorithm=None, report=None, rm=False, fingerprint="fp0"):
    """One trial as ``load_runs`` returns it: pass@1 rises from r0 to a with time constant
    tau (in steps); per-prompt pass@1 at every eval step."""
    rng = np.random.default_rng(zlib.crc32(f"{json.dumps(values, sort_keys=True)} {seed}".encode()))
    tags = {f"axis.{k}": str(v) for k, v in values.items()}
    size = str(values.get("model", "m"))
    tags.update(model_size=size, params_count=str(int(SIZES.get(size, 1e6))), grid="synthetic",
                dataset_fingerprint=fingerprint, **{"mlflow.runName": str(values)})
    params = {"seed": str(values.get("seed", seed)), "model": size}
    if algorithm:
        params["rl.algorithm"] = algorithm
    if report is not None:
        params["grid.report"] = json.dumps(list(report))
    metrics = {k: {} for k in ("val/pass_at_1", "val/pass_at_4", "val/pass_at_16",
                               "val/creativity_index", "compute/flops_total")}
    base = rng.uniform(0.05, 0.6, n_prompts)
    evals = {}
    for s in steps:
        p = r0 + (a - r0) * (1 - np.exp(-s / tau)) + noise * rng.standard_normal()
        metrics["val/pass_at_1"][s] = float(p)
        metrics["val/pass_at_4"][s] = float(1 - (1 - p) ** 4)
        metrics["val/pass_at_16"][s] = float(1 - (1 - p) ** 16)
        metrics["val/creativity_index"][s] = float(1 - (1 - p) ** 16)
        metrics["compute/flops_total"][s] = float(s * flops_per_step * (1 + 0.01 * rng.random()))
        shift = (p - r0) if gain_per_prompt is None else gain_per_prompt * (s > 0)
        evals[s] = list(np.clip(base + shift + 0.02 * rng.standard_normal(n_prompts), 0, 1))
    if rm:
        t = np.arange(1, 41)
        kl = 0.02 * t
        d = np.sqrt(kl)
        metrics["train/kl_init"] = dict(zip(t.tolist(), kl.tolist()))
        gold = d * (0.8 - 0.5 * np.log(d)) + 0.005 * rng.standard_normal(len(t))
        metrics["train/gold_reward_mean"] = dict(zip(t.tolist(), gold.tolist()))
        metrics["train/proxy_reward_mean"] = dict(zip(t.tolist(), (1.5 * d).tolist()))
        params.update({"reward.rm.size": size, "reward.rm.d_rm": "1024"})
        tags["rm_params"] = str(int(SIZES.get(size, 1e6)))
    return {"id": f"run-{values}-{seed}", "name": tags["mlflow.runName"], "status": "FINISHED",
            "tags": tags, "params": params, "metrics": metrics, "evals": evals}


def parent(axes: dict, grid="synthetic"):
    return {"id": "parent-1", "tags": {"grid": grid, "axes": json.dumps(axes),
                                       "git_commit": "abc"}}


def model_grid(sizes=("xs", "s", "m"), seeds=(0, 1), **kw):
    ceilings = {"xs": 0.45, "s": 0.55, "m": 0.66, "l": 0.72}
    runs = [make_run({"model": z, "seed": s}, a=ceilings[z], seed=s, **kw)
            for z in sizes for s in seeds]
    return parent({"model": list(sizes), "seed": list(seeds)}), runs


@pytest.fixture(scope="module")
def sparse(tmp_path_factory):
    """Demo-like: 5 evals (0..40 every 10), 3 sizes x 2 seeds: the sigmoid (3 free
    parameters, 4 informative x) cannot be identified."""
    out = tmp_path_factory.mktemp("sparse")
    par, runs = model_grid()
    return out, build(par, runs, out, log=lambda _: None)


@pytest.fixture(scope="module")
def dense(tmp_path_factory):
    """21 evals (0..100 every 5), 4 sizes x 2 seeds: fits identified."""
    out = tmp_path_factory.mktemp("dense")
    par, runs = model_grid(sizes=("xs", "s", "m", "l"), steps=range(0, 101, 5), tau=25.0,
                           noise=0.004)
    return out, build(par, runs, out, log=lambda _: None)


def _figure_lines(monkeypatch, fn):
    """Run fn with savefig recording each figure's line gids (fit / extrapolation / data)."""
    from matplotlib.figure import Figure
    seen = {}
    real = Figure.savefig

    def record(self, fname, *a, **k):
        seen[str(fname).rsplit("/", 1)[-1]] = [ln.get_gid() for ax in self.axes
                                               for ln in ax.get_lines()]
        return real(self, fname, *a, **k)
    monkeypatch.setattr(Figure, "savefig", record)
    fn()
    return seen


def test_not_identified_fits_are_drawn_as_data_only(tmp_path, monkeypatch):
    par, runs = model_grid()
    seen = _figure_lines(monkeypatch, lambda: build(par, runs, tmp_path, log=lambda _: None))
    assert "fit" not in seen["pass1_vs_flops.png"] and "data" in seen["pass1_vs_flops.png"]
    page = (tmp_path / "report.html").read_text()
    assert "not identified: too few points: 4 distinct x for 3 free parameters (need 6)" in page
    assert "Not identified, drawn as data only" in page
    res = build(par, runs, None, log=lambda _: None).results["scaling"]
    for g in res.groups:
        assert not g.sigmoid.identified
        assert g.sigmoid.intervals["R0"].fixed               # fixed, not estimated
        assert g.sigmoid.describe().startswith("not identified")


def test_identified_fits_are_drawn_over_the_data_with_a_held_out_window(tmp_path, monkeypatch):
    par, runs = model_grid(sizes=("xs", "m"), steps=range(0, 101, 5), tau=25.0, noise=0.004)
    seen = _figure_lines(monkeypatch, lambda: build(par, runs, tmp_path, log=lambda _: None))
    res = build(par, runs, None, log=lambda _: None).results["scaling"]
    g = res.groups[-1]
    assert g.sigmoid.identified, g.sigmoid.reasons
    assert seen["pass1_vs_flops.png"].count("fit") == 2
    assert "extrapolation" in seen["pass1_vs_flops.png"]
    assert g.sigmoid_held.heldout_x[1] == pytest.approx(g.flops[-1])   # no further than data
    page = (tmp_path / "report.html").read_text()
    a = g.sigmoid.intervals["A"]
    assert f"A = {a}" in page and "R0 = 0.3" in page and "(fixed)" in page


def test_fixed_parameters_are_shown_as_fixed(dense):
    _, report = dense
    fits = report.tables["fits"]
    assert "R0 = " in fits and "(fixed)" in fits and "y0 = " in fits
    assert "R0 = 0.3 [" not in fits                       # never an interval for a fixed value
    for k, v in report.metrics.items():
        assert "/R0" not in k and "/y0" not in k           # nor a metric


def test_steps_to_90_only_plotted_when_identified(dense, sparse):
    out, report = dense
    g = report.results["scaling"].groups[0]
    assert g.t90.identified
    assert g.t90.estimate == pytest.approx(g.satexp.fit.params["tau"] * np.log(10))
    assert (out / "steps_to_90_vs_n.png").exists()
    assert report.metrics[f"fit/{g.slug}/steps_to_90/identified"] == 1.0


def test_cross_size_law_needs_four_sizes(sparse, dense):
    _, three = sparse
    _, four = dense
    law3 = [f for f in three.results["findings"] if f.key.startswith("law/A_satexp")]
    assert law3 and "not identified with 3 values of N" in law3[0].sentence
    assert "too few points: 3 distinct x for 2 free parameters (need 4)" in law3[0].sentence
    across = [a for a in four.results["scaling"].across if a.key == "A_satexp"]
    assert across and across[0].fit.identified, across[0].fit.reasons
    assert four.metrics["across/A_satexp/all/power_n/identified"] == 1.0
    assert "across/A_satexp/all/power_n/b_low" in four.metrics
    assert "A_satexp" in four.tables["across"] or "asymptote A" in four.tables["across"]


def test_x_axis_is_the_grids_axis(tmp_path, monkeypatch):
    runs = [make_run({"data.d_rl": d, "seed": s}, a=0.4 + 0.05 * i, seed=s, steps=range(0, 101, 5),
                     tau=20.0, noise=0.004)
            for i, d in enumerate((64, 256, 1024, 2048)) for s in (0, 1)]
    par = parent({"data.d_rl": [64, 256, 1024, 2048], "seed": [0, 1]})
    grid = grid_view(par, runs)
    assert grid.axis == "data.d_rl" and grid.x_label == "RL prompts D_RL" and grid.slug == "d_rl"
    labels = {}
    from matplotlib.axes import Axes
    real = Axes.set

    def spy(self, **kw):
        if "xlabel" in kw:
            labels.setdefault(self.figure, []).append(kw["xlabel"])
        return real(self, **kw)
    monkeypatch.setattr(Axes, "set", spy)
    report = build(par, runs, tmp_path, log=lambda _: None)
    assert (tmp_path / "steps_to_90_vs_d_rl.png").exists()
    assert (tmp_path / "ceiling_vs_d_rl.png").exists()
    assert any("RL prompts D_RL" in v for v in labels.values())
    assert not any("policy parameters" in x for v in labels.values() for x in v)
    assert [g.x for g in report.results["scaling"].groups] == [64.0, 256.0, 1024.0, 2048.0]
    assert "larger D_RL" in report.tables["findings"]


def test_empty_grid_says_so(tmp_path):
    report = build(parent({"model": ["xs"]}), [], tmp_path, log=lambda _: None)
    page = report.path.read_text()
    assert "No finished trial" in page and "no child runs" in page
    run = make_run({"model": "xs", "seed": 0})
    run["metrics"] = {"train/reward_mean": {1: 0.2}}
    run["status"] = "RUNNING"
    report = build(parent({"model": ["xs"]}), [run], tmp_path, log=lambda _: None)
    page = report.path.read_text()
    assert "none of its 1 trial(s) has an evaluation yet" in page and "RUNNING" in page
    assert report.metrics == {}


def test_gain_interval_matches_core_metrics():
    from core.metrics import paired_gain_ci
    rng = np.random.default_rng(0)
    before = rng.uniform(0, 1, (3, 40))
    after = before + 0.05 + 0.1 * rng.standard_normal((3, 40))
    g = paired_gain(before, after)
    assert (g.estimate, g.low, g.high) == pytest.approx(paired_gain_ci(before, after))
    assert not g.inside_noise and len(g.draws) == 2000
    same = group_difference(before, before)
    assert same.inside_noise and same.estimate == pytest.approx(0)


def test_gain_table_from_per_prompt_evals(sparse):
    _, report = sparse
    res = report.results["scaling"]
    for g in res.groups:
        assert g.gain is not None and g.gain.low < g.gain.estimate < g.gain.high
        assert g.gain_note == "step 0 to step 40"
    table = report.tables["gains"]
    assert table.startswith("| trials (seeds pooled) | N |") and "model=m" in table
    assert f"gain/{res.groups[0].slug}_low" in report.metrics


def _control_grid(rl_gain, sft_gain, fingerprint="fp0"):
    runs = []
    for alg, gain in (("grpo", rl_gain), ("sft", sft_gain)):
        for s in (0, 1):
            r = make_run({"model": "m", "rl.algorithm": alg, "seed": s}, seed=s, algorithm=alg,
                         gain_per_prompt=gain, fingerprint=fingerprint)
            for step in r["evals"]:    # the same eval prompts: one base per seed
                base = np.random.default_rng(s).uniform(0.05, 0.6, 48)
                r["evals"][step] = list(np.clip(base + gain * (step > 0)
                                                + 0.01 * np.random.default_rng(step + 7 * s
                                                + (alg == "sft")).standard_normal(48), 0, 1))
            runs.append(r)
    return parent({"model": ["m"], "rl.algorithm": ["grpo", "sft"], "seed": [0, 1]}), runs


def test_control_pairs_rl_with_sft_continuation():
    par, runs = _control_grid(0.12, 0.04)
    report = build(par, runs, None, log=lambda _: None)
    res = report.results["scaling"]
    assert [g.name for g in res.groups] == ["model=m, rl.algorithm=grpo",
                                            "model=m, rl.algorithm=sft"]
    (c,) = res.controls
    assert c.control == "model=m, rl.algorithm=sft" and c.step == 40
    assert c.gain.estimate == pytest.approx(0.08, abs=0.01) and not c.gain.inside_noise
    assert ("RL gain over the SFT control for model=m, rl.algorithm=grpo: +0.0"
            in report.tables["findings"])
    assert "controls" in report.tables and "control/model_m_rl.algorithm_grpo" in report.metrics
    # the control does not enter the laws across the axis, nor "larger N ends higher"
    assert all("sft" not in n for a in res.across for n in a.names)


def test_control_inside_the_noise_and_absent():
    par, runs = _control_grid(0.05, 0.05)
    report = build(par, runs, None, log=lambda _: None)
    (c,) = report.results["scaling"].controls
    assert c.gain.inside_noise and "inside the noise" in report.tables["controls"]
    par, runs = model_grid(sizes=("m",))             # no rl.algorithm key at all
    report = build(par, runs, None, log=lambda _: None)
    assert report.results["scaling"].controls == [] and "controls" not in report.tables
    par, runs = _control_grid(0.1, 0.0, fingerprint=None)
    runs[0]["tags"]["dataset_fingerprint"] = "other"
    (c,) = build(par, runs, None, log=lambda _: None).results["scaling"].controls
    assert c.gain is None and "not paired" in c.note


def test_sections_named_by_the_grid_and_registry():
    from core.report import SECTIONS, get_section, register
    from core.report.section import Section
    par, runs = model_grid(sizes=("xs",), report=("scaling",))
    grid = grid_view(par, runs)
    assert grid.sections == ("scaling",)
    report = build(par, runs, None, log=lambda _: None)
    assert set(report.results) == {"scaling"} and "findings" not in report.tables
    assert grid_view(par, [{**r, "params": {}} for r in runs]).sections == ("findings", "scaling")
    rm_runs = [make_run({"model": "s"}, rm=True)]
    assert grid_view(par, rm_runs).sections == ("findings", "scaling", "rm")
    assert set(SECTIONS) >= {"scaling", "rm", "findings"}
    with pytest.raises(KeyError, match="valid sections: findings, scaling, rm"):
        get_section("nope")
    with pytest.raises(ValueError, match="twice"):
        register(Section("rm", "x", lambda r, g: None, lambda r: ""))


def test_rm_section_fits_gold_reward(tmp_path):
    runs = [make_run({"reward.rm.size": "xs", "seed": s}, seed=s, rm=True) for s in (0, 1)]
    par = parent({"reward.rm.size": ["xs"], "seed": [0, 1]}, grid="rm_scaling")
    report = build(par, runs, tmp_path, log=lambda _: None)
    page = report.path.read_text()
    assert "Reward-model over-optimisation" in page
    assert (tmp_path / "rm_reward_vs_d.png").exists() and (tmp_path / "rm_scaling.png").exists()
    (g,) = report.results["rm"].groups.values()
    assert g.gold_fit.identified and not g.gold_fit.intervals["b"].fixed
    assert "gold-reward curvature b of d(a - b log d)" in report.tables["findings"]
    assert report.metrics[f"rm/{slug(g.name)}/gold/identified"] == 1.0


def test_findings_sentences_carry_intervals(dense):
    _, report = dense
    by_key = {f.key: f for f in report.results["findings"]}
    ends = by_key["ends_higher/all"]
    assert ends.sentence.startswith("larger N ends higher: A(2e7) - A(1.5e5)")
    assert ends.value.low > 0
    assert by_key[f"gain/{report.results['scaling'].groups[0].slug}"].sentence.count("[") == 1
    assert report.metrics["finding/ends_higher/all/value_low"] > 0


def test_gridview_orders_axes_and_groups():
    par, runs = model_grid(sizes=("m", "xs", "s"))
    grid = grid_view(par, runs)
    assert isinstance(grid, GridView) and grid.axes == ("model", "seed") and grid.axis == "model"
    from core.report.runs import group_runs
    assert list(group_runs(runs, grid)) == ["model=xs", "model=s", "model=m"]
    bare = grid_view({"id": "p", "tags": {}}, runs)     # no axes tag: the children's axis tags
    assert set(bare.axes) == {"model", "seed"}


def test_seed_only_grid_plots_against_the_policy_size(tmp_path):
    runs = [make_run({"seed": s}, seed=s) for s in (0, 1)]
    for r in runs:
        r["tags"]["params_count"] = "145408"
    report = build(parent({"seed": [0, 1]}), runs, tmp_path, log=lambda _: None)
    (g,) = report.results["scaling"].groups
    assert g.name == "model=m" and g.x == 145408.0 and g.seeds == 2
    assert (tmp_path / "steps_to_90_vs_n.png").exists()
    assert not (tmp_path / "ceiling_vs_n.png").exists()     # one size: no law across sizes
    assert report.results["scaling"].across == []


def test_config_names_exactly_the_registered_sections():
    import typing

    from core.config import Grid
    from core.report import SECTIONS
    hint = typing.get_type_hints(Grid)["report"]
    (tup, _none) = typing.get_args(hint)
    assert set(typing.get_args(typing.get_args(tup)[0])) == set(SECTIONS)


def test_two_axes_categorical_axis_and_all_zero_pass_at_1(tmp_path):
    """D_SFT x D_RL: one series per D_RL; a curriculum axis: text on the x axis; tiny models
    that score 0 everywhere: degenerate data, never a curve, gains inside the noise."""
    runs = [make_run({"data.d_sft": s, "data.d_rl": r}, a=0.4 + s / 1e5, steps=range(0, 101, 10))
            for s in (1000, 4000, 16000) for r in (256, 1024)]
    (tmp_path / "a").mkdir()
    report = build(parent({"data.d_sft": [1000, 4000, 16000], "data.d_rl": [256, 1024]}), runs,
                   tmp_path / "a", log=lambda _: None)
    res = report.results["scaling"]
    assert {a.series for a in res.across} == {"data.d_rl=256", "data.d_rl=1024"}
    assert (tmp_path / "a" / "steps_to_90_vs_d_sft.png").exists()
    assert "ends_higher/data.d_rl_256" in {f.key for f in report.results["findings"]}
    runs = [make_run({"curriculum.name": c, "seed": s}, seed=s) for c in ("mixed", "easy_to_hard")
            for s in (0, 1)]
    (tmp_path / "b").mkdir()
    report = build(parent({"curriculum.name": ["mixed", "easy_to_hard"], "seed": [0, 1]}), runs,
                   tmp_path / "b", log=lambda _: None)
    assert report.results["scaling"].across == []                 # no law along text
    assert (tmp_path / "b" / "steps_to_90_vs_name.png").exists()
    assert [g.x for g in report.results["scaling"].groups] == ["mixed", "easy_to_hard"]
    assert "Does curriculum=easy_to_hard (vs mixed) end higher?" in report.tables["findings"]
    zero = [make_run({"model": z, "seed": 0}, a=0.0, r0=0.0, noise=0.0) for z in ("xs", "s")]
    for r in zero:
        r["evals"] = {s: [0.0] * 8 for s in r["evals"]}
    (tmp_path / "c").mkdir()
    report = build(parent({"model": ["xs", "s"], "seed": [0]}), zero, tmp_path / "c",
                   log=lambda _: None)
    for g in report.results["scaling"].groups:
        assert not g.sigmoid.identified and not g.satexp.identified
        assert any("degenerate data" in r for r in g.satexp.reasons)
        assert g.gain.inside_noise
    assert "inside the noise" in report.tables["findings"]
