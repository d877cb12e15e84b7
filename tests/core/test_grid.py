"""Grids end to end on a real local Ray: Tune trials, MLflow runs under a parent, the report,
a trial killed mid-run, and an interrupted grid resumed with ``resume=true``."""
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from core.config import expand, load
from tests.conftest import ROOT

SMOKE = ["~grid.axes.model", "model=xs", "grid.axes.seed=[0,1]", "data.d_sft=256",
         "sft.steps=30", "rl.steps=4", "eval.every=2", "data.n_eval=12", "eval.n_samples=8",
         "eval.k_max=8", "rl.prompts_per_step=8", "rl.group_size=4", "data.d_rl=64"]


@pytest.fixture(scope="module")
def ray_cluster():
    import ray
    ray.init(num_cpus=2, include_dashboard=False, configure_logging=False)
    yield
    ray.shutdown()


def _overrides(tmp: Path) -> list[str]:
    return SMOKE + [f"output_dir={tmp}/runs", f"cache_dir={tmp}/cache",
                    f"tracking.tracking_uri=sqlite:///{tmp}/mlflow.db"]


def _children(tmp: Path):
    from mlflow.tracking import MlflowClient
    state = json.loads(next((tmp / "runs" / "smoke").glob("*/grid.json")).read_text())
    client = MlflowClient(tracking_uri=state["tracking_uri"])
    parent = client.get_run(state["parent_run_id"])
    kids = client.search_runs([parent.info.experiment_id],
                              f"tags.mlflow.parentRunId = '{parent.info.run_id}'")
    return client, parent, kids


def _steps(client, run_id, key):
    """Every step a metric was logged at, repeats included: a step logged twice shows twice."""
    return sorted(m.step for m in client.get_metric_history(run_id, key))


def test_two_trial_grid_end_to_end(ray_cluster, tmp_path, monkeypatch):
    from core.grid import run_grid
    monkeypatch.chdir(tmp_path)      # a relative cache_dir, as in the default config
    over = [o for o in _overrides(tmp_path) if not o.startswith("cache_dir=")] + ["cache_dir=rel_cache"]
    # seed 1 as a grid.include point (Tune's one-axis form of the grid): the same two trials
    cfg = load("smoke", over + ["grid.axes.seed=[0]", "+grid.include=[{seed: 1}]"])
    assert [v for v, _ in expand(cfg)] == [{"seed": 0}, {"seed": 1}]
    assert run_grid(cfg, expand(cfg)) == 0
    # both seeds share one SFT base, trained once in the driver's cache (not a trial folder's)
    bases = [p for p in (tmp_path / "rel_cache" / "sft").glob("xs-*") if p.is_dir()]
    assert len(bases) == 1
    client, parent, kids = _children(tmp_path)
    assert len(kids) == 2
    for kid in kids:
        tags, params = kid.data.tags, kid.data.params
        assert tags["grid"] == "smoke" and tags["model_size"] == "xs"
        assert tags["params_count"] == "145408" and len(tags["git_commit"]) >= 7
        assert tags["axis.seed"] in ("0", "1") and tags["dataset_fingerprint"]
        assert "checkpoints" in tags and params["rl.steps"] == "4"
        assert params["eval.k_max"] == "8" and params["ladder.size.params"] == "145408"
        assert _steps(client, kid.info.run_id, "val/pass_at_1") == [0, 2, 4]
        assert _steps(client, kid.info.run_id, "compute/flops_total") == [0, 1, 2, 3, 4]
        assert _steps(client, kid.info.run_id, "train/reward_mean") == [1, 2, 3, 4]
        assert all("@" not in k for k in kid.data.metrics)
    report = next((tmp_path / "runs" / "smoke").glob("*/report"))
    for name in ("report.html", "pass1_vs_step.png", "passk_vs_k.png", "creativity_vs_step.png",
                 "pass1_vs_flops.png", "gain_per_flop.png", "steps_to_90_vs_n.png"):
        assert (report / name).stat().st_size > 1000, name
    html = (report / "report.html").read_text()
    assert "Pass@1 before and after RL" in html and "sigmoid" in html
    artifacts = {a.path for a in client.list_artifacts(parent.info.run_id, "report")}
    assert "report/report.html" in artifacts
    # the report command finds the grid's newest run again
    from core.report import main as report_main
    assert report_main(["grid=smoke", f"output_dir={tmp_path}/runs"]) == 0
    assert report_main(["--run-id", "nope", f"output_dir={tmp_path}/runs"]) == 2


def test_optuna_search_instead_of_a_grid(ray_cluster, tmp_path):
    from core.grid import run_grid
    cfg = load("smoke", _overrides(tmp_path) + [
        "~grid.axes", "rl.steps=2",
        "grid.search={metric: val/pass_at_1, mode: max, num_samples: 2,"
        " space: {rl.lr: {low: 1e-5, high: 1e-3, log: true}}}"])
    assert run_grid(cfg, expand(cfg)) == 0
    client, _, kids = _children(tmp_path)
    lrs = {kid.data.params["rl.lr"] for kid in kids}
    assert len(kids) == 2 and len(lrs) == 2          # two sampled learning rates
    assert all(1e-5 <= float(lr) <= 1e-3 for lr in lrs)


def test_killed_trial_is_retried_and_no_step_is_missing(ray_cluster, tmp_path, monkeypatch):
    from core.grid import FAULT_ENV, run_grid
    monkeypatch.setenv(FAULT_ENV, "2")      # each trial dies once, right after step 2
    cfg = load("smoke", _overrides(tmp_path))
    assert run_grid(cfg, expand(cfg)) == 0
    client, _, kids = _children(tmp_path)
    assert len(kids) == 2
    for kid in kids:
        assert Path(kid.data.tags["trial_dir"], "fault_injected").exists()
        assert _steps(client, kid.info.run_id, "compute/flops_total") == [0, 1, 2, 3, 4]
        assert _steps(client, kid.info.run_id, "val/pass_at_1") == [0, 2, 4]


@pytest.mark.slow
def test_interrupted_grid_resumes_without_losing_steps(tmp_path):
    """SIGINT the driver mid-grid (as Ctrl-C would), then `resume=true` finishes it."""
    args = [sys.executable, "-m", "core.tune", "grid=smoke", *_overrides(tmp_path),
            "rl.steps=8", "grid.max_concurrent=1"]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(args, cwd=ROOT, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True)
    deadline = time.time() + 240
    while time.time() < deadline:   # wait until the first trial has evaluated step 4
        if list((tmp_path / "runs").glob("smoke/*/trials/*/evals/step_000004.json")):
            break
        if proc.poll() is not None:
            pytest.fail("the grid exited early:\n" + proc.communicate()[0][-3000:])
        time.sleep(0.5)
    else:
        proc.kill()
        pytest.fail("the first trial never reached step 4:\n" + proc.communicate()[0][-3000:])
    os.killpg(proc.pid, signal.SIGINT)
    out = proc.communicate(timeout=120)[0]
    client, parent, kids = _children(tmp_path)
    first_parent = parent.info.run_id
    assert parent.info.status == "KILLED", out[-2000:]          # the grid stopped before its end
    resumed = subprocess.run(args + ["resume=true"], cwd=ROOT, env=env, text=True,
                             capture_output=True, timeout=400)
    assert resumed.returncode == 0, out[-2000:] + resumed.stdout[-3000:] + resumed.stderr[-3000:]
    assert "resuming" in resumed.stdout
    client, parent, kids = _children(tmp_path)
    assert parent.info.run_id == first_parent and len(kids) == 2
    assert parent.info.status == "FINISHED"
    for kid in kids:
        assert _steps(client, kid.info.run_id, "compute/flops_total") == list(range(9))
        assert _steps(client, kid.info.run_id, "val/pass_at_1") == [0, 2, 4, 6, 8]


def test_killed_driver_leaves_no_process_and_resumes_logging_each_step_once(tmp_path):
    """kill -9 of the driver mid-grid: every process it started (Ray, its agents, the trials)
    is stopped by its watchdog; `resume=true` then logs each step exactly once."""
    import psutil
    args = [sys.executable, "-m", "core.tune", "grid=smoke", *_overrides(tmp_path), "rl.steps=6",
            "grid.axes.seed=[0]", "grid.max_concurrent=1"]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    env.pop("RAY_ADDRESS", None)
    proc = subprocess.Popen(args, cwd=ROOT, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True)
    deadline = time.time() + 240
    while time.time() < deadline:   # the trial has evaluated step 2 and trains on
        if list((tmp_path / "runs").glob("smoke/*/trials/*/evals/step_000002.json")):
            break
        if proc.poll() is not None:
            pytest.fail("the grid exited early:\n" + proc.communicate()[0][-3000:])
        time.sleep(0.5)
    else:
        proc.kill()
        pytest.fail("the trial never reached step 2:\n" + proc.communicate()[0][-3000:])
    tree = psutil.Process(proc.pid).children(recursive=True)
    assert any("raylet" in p.name() for p in tree)
    proc.kill()                     # SIGKILL: no handler, no ray.shutdown()
    proc.communicate(timeout=30)
    gone, alive = psutil.wait_procs(tree, timeout=30)
    leftover = [(p.pid, p.name()) for p in alive]
    assert not leftover, f"processes the killed driver started still run: {leftover}"
    resumed = subprocess.run(args + ["resume=true"], cwd=ROOT, env=env, text=True,
                             capture_output=True, timeout=400)
    assert resumed.returncode == 0, resumed.stdout[-3000:] + resumed.stderr[-3000:]
    client, parent, (kid,) = _children(tmp_path)
    assert parent.info.status == "FINISHED"
    assert _steps(client, kid.info.run_id, "trial/step") == list(range(7))      # once each
    assert _steps(client, kid.info.run_id, "train/reward_mean") == list(range(1, 7))
    assert _steps(client, kid.info.run_id, "val/pass_at_1") == [0, 2, 4, 6]


def test_guru_grid_runs_on_fixture_data(ray_cluster, tmp_path):
    """`grid=guru` with `data.path=<folder>` on the local backend: real loader, grading,
    verifiers and sandbox; the data fingerprint tag is the content hash of the selection."""
    from mlflow.tracking import MlflowClient

    from core.data import selection_fingerprint
    from core.grid import run_grid
    from plugins.datasets import _guru_sample
    folder = _guru_sample.write(tmp_path / "guru", n_train=30, n_eval=8)
    cfg = load("guru", [f"data.path={folder}", "data.domains=[math,logic]", "grid.axes.model=[xs]",
                        "rl.steps=2", "eval.every=2", f"output_dir={tmp_path}/runs",
                        f"cache_dir={tmp_path}/cache", f"tracking.tracking_uri=sqlite:///{tmp_path}/mlflow.db"])
    assert run_grid(cfg, expand(cfg)) == 0
    state = json.loads(next((tmp_path / "runs" / "guru").glob("*/grid.json")).read_text())
    client = MlflowClient(tracking_uri=state["tracking_uri"])
    parent = client.get_run(state["parent_run_id"])
    (kid,) = client.search_runs([parent.info.experiment_id],
                                f"tags.mlflow.parentRunId = '{parent.info.run_id}'")
    assert kid.data.tags["dataset_fingerprint"] == selection_fingerprint(expand(cfg)[0][1])
    assert kid.data.params["data.dataset"] == "guru" and kid.data.params["reward.name"] == "guru"
    assert _steps(client, kid.info.run_id, "val/math/pass_at_1") == [0, 2]
    assert _steps(client, kid.info.run_id, "val/logic/pass_at_1") == [0, 2]


def test_bad_guru_path_fails_before_ray_starts(tmp_path):
    from core.errors import UserError
    from core.grid import check_inputs
    cfg = load("guru", [f"data.path={tmp_path}/missing/a/b"])
    with pytest.raises(UserError, match="neither a folder nor a hub dataset id"):
        check_inputs(expand(cfg))


RM_SMOKE = ["grid.axes.reward.rm.size=[xs]", "grid.axes.reward.rm.d_rm=[48,96]", "model=xs",
            "data.difficulties=[1,2]", "data.d_sft=2000", "sft.steps=200", "reward.rm.steps=60",
            "reward.rm.n_eval_pairs=32", "reward.rm.init=random", "rl.steps=10", "eval.every=5",
            "data.n_eval=16", "eval.n_samples=4", "eval.k_max=4", "rl.prompts_per_step=16",
            "rl.group_size=4"]


@pytest.mark.slow
def test_rm_scaling_grid_end_to_end(ray_cluster, tmp_path):
    """`grid=rm_scaling` with smoke overrides: the grid starts the Serve endpoint, each trial
    trains its RM and the policy against it, and the report has the over-optimisation plots."""
    from mlflow.tracking import MlflowClient

    from core.grid import run_grid
    cfg = load("rm_scaling", RM_SMOKE + [f"output_dir={tmp_path}/runs", f"cache_dir={tmp_path}/cache",
                                         f"tracking.tracking_uri=sqlite:///{tmp_path}/mlflow.db"])
    assert run_grid(cfg, expand(cfg)) == 0
    run_dir = next((tmp_path / "runs" / "rm_scaling").glob("*/grid.json")).parent
    state = json.loads((run_dir / "grid.json").read_text())
    client = MlflowClient(tracking_uri=state["tracking_uri"])
    parent = client.get_run(state["parent_run_id"])
    kids = client.search_runs([parent.info.experiment_id],
                              f"tags.mlflow.parentRunId = '{parent.info.run_id}'")
    assert len(kids) == 3          # RM xs at two D_RM, and the grid.include rule-reward trial
    (rule,) = [k for k in kids if k.data.params["reward.name"] == "synthetic"]
    assert rule.data.tags["axis.reward.name"] == "synthetic" and "train/proxy_reward_mean" not in rule.data.metrics
    assert _steps(client, rule.info.run_id, "train/acc_mean") == list(range(1, 11))
    for kid in (k for k in kids if k is not rule):
        rid = kid.info.run_id
        for key in ("train/proxy_reward_mean", "train/gold_reward_mean", "train/kl_init",
                    "reward/rm_errors"):
            assert _steps(client, rid, key) == list(range(1, 11)), key
        rm_flops = [m.value for m in sorted(client.get_metric_history(rid, "compute/flops_rm"),
                                            key=lambda m: m.step)]
        assert rm_flops[0] == 0 and all(b > a for a, b in zip(rm_flops, rm_flops[1:]))
        assert _steps(client, rid, "rm/heldout_acc") == [0]
        assert kid.data.tags["rm_params"] == "145408"
        assert all(m.value >= 0 for m in client.get_metric_history(rid, "train/kl_init"))
    page = (run_dir / "report" / "report.html").read_text()
    assert "Reward-model over-optimisation" in page and "Rule reward vs learned RMs" in page
    assert (run_dir / "report" / "rm_reward_vs_d.png").exists()
    assert (run_dir / "report" / "rm_scaling.png").exists()


def _logged(tmp: Path, out: str) -> dict:
    """Every metric value (key, step, value) and param each trial of a grid logged, by trial."""
    from mlflow.tracking import MlflowClient
    state = json.loads(next((tmp / out / "demo").glob("*/grid.json")).read_text())
    client = MlflowClient(tracking_uri=state["tracking_uri"])
    parent = client.get_run(state["parent_run_id"])
    got = {}
    for kid in client.search_runs([parent.info.experiment_id],
                                  f"tags.mlflow.parentRunId = '{parent.info.run_id}'"):
        axes = tuple(sorted((k, v) for k, v in kid.data.tags.items() if k.startswith("axis.")))
        metrics = sorted((key, m.step, m.value) for key in kid.data.metrics
                         for m in client.get_metric_history(kid.info.run_id, key))
        params = {k: v for k, v in kid.data.params.items() if str(tmp) not in v}
        got[axes] = (metrics, params, kid.data.tags.get("dataset_fingerprint"))
    return got


def test_the_demo_recipe_reruns_to_the_same_numbers(ray_cluster, tmp_path):
    """The demo's recipe (noisy SFT data, RL and its SFT control), shrunk, run twice from
    scratch (SFT base retrained, fresh MLflow store): every logged value is equal."""
    from core.grid import run_grid
    tiny = ["grid.axes.model=[xxs]", "data.d_sft=256", "sft.steps=20", "rl.steps=3", "eval.every=3",
            "data.n_eval=8", "eval.n_samples=4", "eval.k_max=4", "rl.prompts_per_step=4",
            "rl.group_size=4", "data.d_rl=32"]
    for out in ("a", "b"):
        cfg = load("demo", tiny + [f"output_dir={tmp_path}/{out}", f"cache_dir={tmp_path}/cache_{out}",
                                   f"tracking.tracking_uri=sqlite:///{tmp_path}/{out}.db"])
        assert run_grid(cfg, expand(cfg)) == 0
    first, second = _logged(tmp_path, "a"), _logged(tmp_path, "b")
    assert len(first) == 2 and all(len(m) > 50 for m, _, _ in first.values())   # RL and control
    assert first == second
