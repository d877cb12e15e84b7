"""The rm section's gold-reward peaks and plateaus (``core/report/rm_peak.py``) on synthetic
runs: a learned RM whose gold rises then falls, one that only falls, and a rule-reward trial of
the same grid (``grid.include``) that rises and holds."""
import numpy as np

from core.report import build
from core.report.rm_peak import peak
from tests.core.test_report import make_run, parent

STEPS = np.arange(1, 41)


def _rm_run(size: str, gold: np.ndarray, seed: int = 0) -> dict:
    run = make_run({"reward.rm.size": size, "seed": seed}, seed=seed, rm=True)
    run["params"].update({"rl.prompts_per_step": "64", "rl.group_size": "8", "reward.rm.size": size})
    run["tags"]["rm_params"] = {"xs": "145408", "s": "752128"}[size]
    run["metrics"]["train/gold_reward_mean"] = dict(zip(STEPS.tolist(), gold.tolist()))
    run["metrics"]["train/acc_mean"] = dict(zip(STEPS.tolist(), gold.tolist()))
    run["metrics"]["compute/flops_total"] = {int(s): 1e10 * s for s in range(0, 41)}
    return run


def _rule_run(gold: np.ndarray) -> dict:
    run = make_run({"reward.name": "synthetic"})
    run["params"].update({"rl.prompts_per_step": "64", "rl.group_size": "8", "reward.name": "synthetic"})
    run["metrics"]["train/acc_mean"] = dict(zip(STEPS.tolist(), gold.tolist()))
    run["metrics"]["compute/flops_total"] = {int(s): 1e10 * s for s in range(0, 41)}
    return run


def _noisy(curve: np.ndarray, seed: int) -> np.ndarray:
    return np.clip(curve + 0.01 * np.random.default_rng(seed).standard_normal(len(curve)), 0, 1)


RISE_FALL = 0.5 + 0.2 * np.minimum(STEPS, 15) / 15 - 0.25 * np.maximum(STEPS - 15, 0) / 25
FALL = 0.5 - 0.2 * STEPS / 40
HOLD = 0.5 + 0.25 * (1 - np.exp(-STEPS / 4))


def test_peak_tells_rise_then_fall_from_fall_and_hold():
    rf = peak([_rm_run("s", _noisy(RISE_FALL, s), s) for s in (0, 1)])
    assert rf.shape == "rose, then fell" and rf.seeds == 2
    # gains are of the 5-step running mean: from 0.54 (steps 1-5) to about 0.68
    assert 0.11 < rf.peak[0] < 0.17 and rf.peak[1] > 0.08 and rf.fall[1] > 0.1
    assert 12 <= rf.peak_step[0] <= 20 and rf.peak_step[1] <= rf.peak_step[0] <= rf.peak_step[2]
    assert rf.kl_at_peak[0] > 0          # make_run's KL grows 0.02 per step
    assert peak([_rm_run("xs", _noisy(FALL, 3))]).shape == "fell from the start"
    hold = peak([_rule_run(_noisy(HOLD, 4))], "train/acc_mean")
    assert hold.shape == "rose, then held" and not np.isfinite(hold.kl_at_peak[0])
    assert hold.plateau_step[0] < rf.plateau_step[0]
    assert hold.plateau_flops == 1e10 * hold.plateau_step[0]


def test_rm_section_sets_rule_reward_beside_rms(tmp_path):
    runs = [_rm_run("s", _noisy(RISE_FALL, s), s) for s in (0, 1)]
    runs += [_rm_run("xs", _noisy(FALL, 3)), _rule_run(_noisy(HOLD, 4))]
    par = parent({"reward.rm.size": ["xs", "s"], "seed": [0, 1]}, grid="rm_scaling")
    report = build(par, runs, tmp_path, log=lambda _: None)
    res = report.results["rm"]
    assert set(res.rule) == {"rule reward synthetic"}
    rm_table, plateau = report.tables["rm"], report.tables["rm_plateau"]
    assert "rose, then fell" in rm_table and "fell from the start" in rm_table
    assert "rule reward synthetic" in plateau and "rose, then held" in plateau
    assert "rm=s, d_rm=1024" in plateau and "rm=xs, d_rm=1024" in plateau
    # the exploited RM's gold peaks near step 15; the rule reward's holds from about step 10
    assert "Plateaus first: rule reward synthetic" in plateau
    assert "rule reward synthetic plateaus at step" in plateau and "inside the noise of rm=s, d_rm=1024" in plateau
    assert "Rule reward vs learned RMs" in report.path.read_text()
