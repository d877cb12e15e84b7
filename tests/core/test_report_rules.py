"""The ``rules`` report section on synthetic runs (no MLflow) and the rule-complexity grid."""
import numpy as np
import pytest

from core.report import build
from core.report.rules import level_rank, mean_with_draws
from tests.core.test_report import SIZES, make_run, parent

LEVELS = ("[1]", "[2]", "[3]", "[4]")


def rules_grid(slopes: dict, sizes=("xs", "s", "m"), seeds=(0,)):
    """pass@1 at the end = 0.5 - 0.1 (level - 1) + slope x decades of N above xs."""
    runs = []
    for i, lv in enumerate(LEVELS):
        for z in sizes:
            a = 0.5 - 0.1 * i + slopes[lv] * np.log10(SIZES[z] / SIZES["xs"])
            for s in seeds:
                runs.append(make_run({"model": z, "data.difficulties": lv, "seed": s}, a=a,
                                     r0=0.1, tau=8.0, seed=s, report=("rules",)))
    axes = {"model": list(sizes), "data.difficulties": list(LEVELS), "seed": list(seeds)}
    return parent(axes, grid="rule_complexity"), runs


@pytest.fixture(scope="module")
def steeper(tmp_path_factory):
    out = tmp_path_factory.mktemp("rules")
    par, runs = rules_grid({"[1]": 0.02, "[2]": 0.05, "[3]": 0.1, "[4]": 0.2})
    return out, build(par, runs, out, log=lambda _: None)


def test_slopes_levels_and_the_answer(steeper):
    out, report = steeper
    res = report.results["rules"]
    assert res.axis == "data.difficulties" and [lv.label for lv in res.levels] == list(LEVELS)
    slopes = [lv.slope.estimate for lv in res.levels]
    assert slopes == sorted(slopes) and slopes[-1] == pytest.approx(0.2, abs=0.06)
    for lv in res.levels:                 # three sizes: Tan et al.'s 2-parameter law is data only
        assert not lv.power.identified and "too few points" in lv.power.reasons[0]
        assert lv.slope.low < lv.slope.estimate < lv.slope.high
    assert [c.verdict() for c in res.compares][-1] == "steeper"
    assert res.compares[-1].diff.low > 0
    table = report.tables["rules"]
    assert "steeper" in table and "not identified" in table and "[4]" in table
    assert "rules_plateau" in report.tables
    assert (out / "rules_vs_n.png").exists()
    assert any(k.startswith("rules/") and k.endswith("/slope") for k in report.metrics)


def test_plateau_fit_per_cell(steeper):
    _, report = steeper
    cells = [c for lv in report.results["rules"].levels for c in lv.cells]
    assert len(cells) == 12
    ident = [c for c in cells if c.t90.identified]
    assert ident, "5 evaluations with y0 fixed identify the saturating exponential"
    for c in ident:                       # tau = 8 in the synthetic runs: t90 = 8 ln 10
        assert c.t90.interval.low <= 8 * np.log(10) * 1.6


def test_equal_slopes_are_inside_the_noise(tmp_path):
    par, runs = rules_grid({lv: 0.05 for lv in LEVELS})
    res = build(par, runs, None, log=lambda _: None).results["rules"]
    assert all(c.verdict() in ("inside the noise",) for c in res.compares), \
        [str(c.diff) for c in res.compares]


def test_no_level_axis_says_so(tmp_path):
    par, runs = rules_grid({lv: 0.05 for lv in LEVELS})
    for r in runs:
        r["tags"].pop("axis.data.difficulties")
    par["tags"]["axes"] = '{"model": ["xs", "s", "m"]}'
    report = build(par, runs, tmp_path, log=lambda _: None)
    assert not report.results["rules"] and "rules" not in report.tables


def test_level_rank_and_mean_interval():
    assert level_rank("[1, 3]") == 3 and level_rank("composite_l2") == 2
    assert level_rank("hard", ("easy", "hard")) == 1
    g = mean_with_draws(np.full((2, 10), 0.25))
    assert g.estimate == g.low == g.high == pytest.approx(0.25)


def test_rule_complexity_grid_composes():
    from core.config import expand, load
    cfg = load("rule_complexity")
    trials = expand(cfg)
    assert len(trials) == 12 and cfg.data.dataset == "rules" and cfg.reward.name == "composite"
    assert {tuple(t.data.difficulties) for _, t in trials} == {(1,), (2,), (3,), (4,)}
    assert {t.model for _, t in trials} == {"xxxs", "xs", "s"}
    assert "rules" in cfg.grid.report
    r1 = load("rule_complexity", ["scale=r1"])
    assert r1.data.dataset == "rules" and r1.grid.axes["model"][-1] == "qwq-32b"
