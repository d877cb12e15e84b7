"""The ``curriculum`` report section on synthetic metric histories (no training), and the
curriculum grid's config."""
from __future__ import annotations

import json
import zlib

import numpy as np
import pytest

from core.report import build
from core.report.curriculum import analyse, ceilings_differ, fewest_flops, filtering
from core.report.runs import grid_view

CURRICULA = ("mixed", "easy_to_hard", "competence", "online_filter")
STEPS = range(0, 29, 4)


@pytest.fixture(autouse=True)
def fewer_draws(monkeypatch):
    import core.report.curriculum as section
    monkeypatch.setattr(section, "N_BOOT", 20)     # fast; the rules are the same


def _sigmoid(c, a, b, c_mid, r0):
    return r0 + (a - r0) / (1 + (c_mid / np.maximum(c, 1e-30)) ** b)


def make_run(cur: str, size: str, seed: int, *, a: float, c_mid: float = 6e11, b: float = 1.5,
             r0: float = 0.2, per_step: float = 5e10, noise: float = 0.005, filters: bool = False,
             n_prompts: int = 40) -> dict:
    rng = np.random.default_rng(zlib.crc32(f"{cur} {size} {seed}".encode()))
    m: dict[str, dict] = {k: {} for k in ("val/pass_at_1", "val/pass_at_8", "compute/flops_total",
                                          "compute/flops_rollout", "val/level_1/pass_at_1",
                                          "val/level_3/pass_at_1")}
    evals = {}
    base = rng.uniform(0.0, 0.4, n_prompts)
    step_cost = per_step                 # equal compute: refills are part of each step
    for s in range(0, max(STEPS) + 1):
        m["compute/flops_total"][s] = s * step_cost
        m["compute/flops_rollout"][s] = s * step_cost / 3
        if filters and s:
            m.setdefault("train/filtered_groups", {})[s] = 8.0
            m.setdefault("train/served_prompts", {})[s] = 48.0
            m.setdefault("train/extra_prompts", {})[s] = 16.0
    for s in STEPS:
        p = _sigmoid(s * step_cost, a, b, c_mid, r0) + noise * rng.standard_normal() * (s > 0)
        m["val/pass_at_1"][s] = float(p)
        m["val/pass_at_8"][s] = float(1 - (1 - p) ** 8)
        m["val/level_1/pass_at_1"][s] = float(min(1.0, 2 * p))
        m["val/level_3/pass_at_1"][s] = float(p / 4)
        evals[s] = list(np.clip(base + p - r0, 0, 1))
    values = {"curriculum.name": cur, "model": size, "seed": seed}
    tags = {f"axis.{k}": str(v) for k, v in values.items()}
    tags.update(model_size=size, grid="curriculum", **{"mlflow.runName": json.dumps(values)})
    return {"id": f"{cur}-{size}-{seed}", "name": tags["mlflow.runName"], "status": "FINISHED",
            "tags": tags, "params": {"seed": str(seed), "grid.report": '["curriculum"]', "curriculum.name": cur},
            "metrics": m, "evals": evals}


def grid(ceilings: dict, sizes=("s",), seeds=(0, 1), c_mids: dict | None = None, **kw):
    runs = [make_run(c, z, s, a=ceilings[c], filters=c == "online_filter",
                     c_mid=(c_mids or {}).get(c, 6e11), **kw)
            for z in sizes for c in CURRICULA for s in seeds]
    axes = {"curriculum.name": list(CURRICULA), "model": list(sizes), "seed": list(seeds)}
    parent = {"id": "p", "tags": {"grid": "curriculum", "axes": json.dumps(axes)}}
    return parent, runs


def test_groups_fits_and_filtering_spend():
    parent, runs = grid({"mixed": 0.5, "easy_to_hard": 0.5, "competence": 0.5, "online_filter": 0.5})
    res = analyse(runs, grid_view(parent, runs))
    assert [g.curriculum for g in res.groups] == list(CURRICULA)
    assert len(res.series) == 1 and res.series[0].name == "model=s"
    mixed = res.groups[0]
    assert mixed.sigmoid.identified, mixed.sigmoid.reasons
    assert abs(mixed.sigmoid.intervals["A"].estimate - 0.5) < 0.05
    assert mixed.shared.identified and mixed.shared.intervals["A"].fixed
    assert mixed.c90.identified
    assert sorted(mixed.levels) == [1, 3] and mixed.k_max == 8
    assert mixed.filtering == [] and mixed.vs_mixed is None
    f = res.groups[3].filtering
    assert len(f) == 2 and f[0].filtered_groups == 8 * 28 and f[0].extra_prompts == 16 * 28
    # a third of each step's rollout FLOPs went to prompts not trained on
    assert f[0].extra_flops == pytest.approx(f[0].total_flops / 3 / 3)
    # same ceilings: no difference beyond the seed spread
    answer, _ = ceilings_differ(res.series[0])
    assert answer.startswith("no")


def test_different_ceilings_are_found_and_the_fastest_named():
    parent, runs = grid({"mixed": 0.35, "easy_to_hard": 0.6, "competence": 0.45, "online_filter": 0.5},
                        c_mids={"online_filter": 3e12})
    res = analyse(runs, grid_view(parent, runs))
    answer, why = ceilings_differ(res.series[0])
    assert answer.startswith("yes") and "easy_to_hard vs online_filter" in why
    gain = res.groups[1].vs_mixed
    assert gain is not None and gain.low > 0
    best, why = fewest_flops(res.series[0])
    assert best.split(" ")[0] in CURRICULA and all(c in why for c in CURRICULA)
    assert best.endswith("inside the noise)")   # the 90% intervals of C90 overlap


def test_too_few_evals_are_not_identified_and_not_drawn(tmp_path):
    parent, runs = grid({c: 0.5 for c in CURRICULA})
    for r in runs:                     # two evaluations: nothing can be fitted
        r["metrics"]["val/pass_at_1"] = {s: v for s, v in r["metrics"]["val/pass_at_1"].items() if s in (0, 28)}
    report = build(parent, runs, tmp_path)
    res = report.results["curriculum"]
    assert not any(g.sigmoid.identified for g in res.groups)
    assert "not identified" in report.tables["curriculum"]
    assert (tmp_path / "curriculum_pass1_vs_flops.png").exists()
    assert (tmp_path / "curriculum_levels_vs_step.png").exists()
    assert "fewest FLOPs" in report.tables["curriculum"]


def test_whole_curriculum_entries_as_the_axis():
    """The grid's axis is ``curriculum`` ({name, options} per value, so competence can carry
    its steps_to_full): groups are still named by the curriculum."""
    parent, runs = grid({c: 0.5 for c in CURRICULA}, sizes=("xs", "s"), seeds=(0,))
    entries = [{"name": c, "options": {}} for c in CURRICULA]
    parent["tags"]["axes"] = json.dumps({"curriculum": entries, "model": ["xs", "s"], "seed": [0]})
    for r in runs:
        cur = r["tags"].pop("axis.curriculum.name")
        r["tags"]["axis.curriculum"] = str({"name": cur, "options": {}})
    res = analyse(runs, grid_view(parent, runs))
    assert [s.name for s in res.series] == ["model=s", "model=xs"]
    assert [g.curriculum for g in res.series[0].groups] == list(CURRICULA)
    assert res.groups[0].name == "curriculum=mixed, model=s"


def test_a_grid_without_the_curriculum_axis_has_no_groups():
    parent, runs = grid({c: 0.5 for c in CURRICULA})
    parent["tags"]["axes"] = json.dumps({"model": ["s"], "seed": [0, 1]})
    for r in runs:
        del r["tags"]["axis.curriculum.name"]
    assert not analyse(runs, grid_view(parent, runs))
    assert filtering(runs[0]) is None


def test_the_grid_composes_with_a_budget_per_size():
    from core.config import expand, load
    cfg = load("curriculum", [])
    assert [c["name"] for c in cfg.grid.axes["curriculum"]] == list(CURRICULA)
    assert cfg.grid.report == ("curriculum",)
    trials = expand(cfg)
    assert len(trials) == len(CURRICULA) * len(cfg.grid.axes["model"]) * len(cfg.grid.axes["seed"])
    for values, trial in trials:       # each trial stops at its own size's budget
        assert trial.rl.max_flops == cfg.rl.max_flops[values["model"]]
    # the trainable builds its config the same way (core.grid.train_fn)
    from core import schema
    from core.config import Config, with_values
    raw = schema.to_dict(cfg)
    assert schema.build(Config, with_values(raw, {"model": "xs", "seed": 1})).rl.max_flops == \
        cfg.rl.max_flops["xs"]


def test_a_budget_per_size_must_cover_the_sizes():
    from core.config import compose, validate
    from core.errors import ConfigError
    raw = compose("curriculum", [])
    raw["rl"]["max_flops"] = {"xs": 1e11, "s": 1e12, "q": 5.0}
    with pytest.raises(ConfigError, match="a budget per size must name a size of the ladder"):
        validate(raw)
    raw["rl"]["max_flops"] = {"xs": 1e11}
    with pytest.raises(ConfigError, match="no budget for model 's'"):
        validate(raw)
    raw["rl"]["max_flops"] = {"xs": 1e11, "s": -1.0}
    with pytest.raises(ConfigError, match="rl.max_flops.s"):
        validate(raw)
    raw["rl"]["max_flops"] = {"xs": 1e11, "s": 1e12}
    raw["grid"]["axes"].pop("model")
    with pytest.raises(ConfigError, match="needs `model` as a grid axis"):
        validate(raw)
