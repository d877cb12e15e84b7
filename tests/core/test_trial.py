"""A full trial of the smallest ladder size on the CPU: SFT, GRPO steps, evaluations, resume."""
import json

import pytest

from core.config import load
from core.trial import latest_checkpoint, run_trial

SMOKE = ["model=xs", "~grid.axes.model", "data.d_sft=256", "sft.steps=30", "rl.steps=4",
         "eval.every=2", "data.n_eval=12", "eval.n_samples=8", "eval.k_max=8",
         "rl.prompts_per_step=8", "rl.group_size=4", "data.d_rl=64", "rl.kl_coef=0.01",
         "data.domains=[arith,sort,rev]", "data.difficulties=[1,2]"]


@pytest.fixture(scope="module")
def cfg(tmp_path_factory):
    cache = tmp_path_factory.mktemp("cache")
    return load("smoke", SMOKE + [f"cache_dir={cache}"])


def test_full_trial_metrics_flops_and_pass_at_k(cfg, tmp_path):
    steps = list(run_trial(cfg, tmp_path / "t", log=lambda *_: None))
    assert [m["step"] for m, _ in steps] == [0, 1, 2, 3, 4]
    evals = [m for m, ck in steps if ck is not None]
    assert [m["step"] for m in evals] == [0, 2, 4]
    for m in evals:
        for name in ("val/pass_at_1", "val/pass_at_2", "val/pass_at_4", "val/pass_at_8",
                     "val/creativity_index", "val/response_length", "val/arith/pass_at_1",
                     "val/sort/pass_at_8", "val/rev/pass_at_4", "compute/flops_total",
                     "compute/flops_eval"):
            assert name in m, name
        ks = [m[f"val/pass_at_{k}"] for k in (1, 2, 4, 8)]
        assert ks == sorted(ks), "pass@k must be monotone in k"
        assert m["val/creativity_index"] == m["val/pass_at_8"]
    train = [m for m, _ in steps if m["step"] > 0]
    for m in train:
        for name in ("train/reward_mean", "train/kl", "train/entropy", "train/response_length",
                     "compute/flops_rollout", "compute/flops_update",
                     "compute/flops_reference"):
            assert name in m, name
        assert all("@" not in k for k in m)
    totals = [m["compute/flops_total"] for m, _ in steps]
    assert totals[0] == 0 and all(b > a for a, b in zip(totals, totals[1:]))
    assert train[-1]["compute/flops_reference"] > 0       # KL on: the reference runs
    assert train[-1]["compute/flops_update"] == pytest.approx(
        3 * train[-1]["compute/flops_rollout"], rel=1e-9)   # same sequences, train = 3x fwd
    # the estimate printed before launch (--cfg, --dry-run) is within 30% of what the run spent
    from core.estimate import trial_cost
    est = trial_cost(cfg, pad=True)
    last = steps[-1][0]
    for phase in ("rollout", "reference", "update", "eval"):
        assert est.flops[phase] == pytest.approx(last[f"compute/flops_{phase}"], rel=0.3), phase
    assert est.train_flops == pytest.approx(last["compute/flops_total"], rel=0.3)
    assert est.flops["sft"] == pytest.approx(steps[0][0]["compute/flops_sft"], rel=0.3)


def test_killed_trial_resumes_from_its_checkpoint(cfg, tmp_path):
    work = tmp_path / "t"
    first = []
    for metrics, ckpt in run_trial(cfg, work, log=lambda *_: None):
        first.append(metrics)
        if metrics["step"] == 2:
            break                                   # the trial "dies" after step 2's checkpoint
    assert latest_checkpoint(work).name == "step_000002"
    state = json.loads((latest_checkpoint(work) / "trainer.json").read_text())
    resumed = [m for m, _ in run_trial(cfg, work, resume_from=latest_checkpoint(work),
                                       log=lambda *_: None)]
    assert [m["step"] for m in resumed] == [3, 4]
    assert resumed[0]["compute/flops_total"] > sum(
        v for k, v in state["flops"].items() if k != "eval")   # FLOPs carry over
    assert latest_checkpoint(work).name == "step_000004"
    assert list(run_trial(cfg, work, resume_from=latest_checkpoint(work),
                          log=lambda *_: None)) == []   # finished: nothing to redo
    assert sorted(p.name for p in (work / "checkpoints").iterdir()) == [
        "step_000002", "step_000004"]                  # older checkpoints are pruned
    assert (work / "evals" / "step_000000.json").exists()


def test_sft_base_is_cached_and_shared(cfg, tmp_path):
    from core.backends.sft import warm_start
    logs = []
    path1, flops1 = warm_start(cfg, log=logs.append)
    path2, flops2 = warm_start(cfg.__class__(**{**cfg.__dict__, "seed": 7}), log=logs.append)
    assert path1 == path2 and flops1 == flops2 > 0
    assert any("reusing cached base" in line for line in logs)


def test_model_loads_through_auto_classes(cfg):
    from core import models
    from core.models import count_params
    model, tok = models.load(models.model_source(cfg.size, cfg.cache_dir))
    assert type(model).__name__ == "Qwen2ForCausalLM"
    assert count_params(model) == cfg.size.params
    assert tok.decode(tok("r:ab cd=#12")["input_ids"]) == "r:ab cd=#12"


def test_same_seed_same_trajectory_with_a_cold_or_a_warm_cache(tmp_path):
    """Training the SFT base in-process (cold cache) and loading it (warm cache) must not change
    the RL trajectory: every logged value is the same."""
    cfg = load("smoke", SMOKE + ["rl.kl_coef=null", f"cache_dir={tmp_path / 'cache'}"])

    def values(work):
        out = []
        for m, _ in run_trial(cfg, tmp_path / work, log=lambda *_: None):
            out.append({k: v for k, v in m.items() if isinstance(v, (int, float))})
        return out

    cold = values("cold")                 # trains the SFT base, then RL
    warm = values("warm")                 # the base comes from the cache
    assert cold == warm


def test_online_filter_refills_counts_its_rollouts_and_resumes_the_schedule(tmp_path):
    """A filtering curriculum: dropped groups are refilled (their rollouts count as rollout
    compute and train/filtered_groups says how many), and a killed trial resumes with the
    curriculum's state, so the schedule continues as if it had not stopped."""
    over = ["curriculum.name=online_filter", "+curriculum.options.retire_at=0.75",
            "+curriculum.options.max_refill_rounds=2", "rl.kl_coef=null", f"cache_dir={tmp_path / 'cache'}"]
    cfg = load("smoke", SMOKE + over)
    full = list(run_trial(cfg, tmp_path / "a", log=lambda *_: None))
    train = [m for m, _ in full if m["step"] > 0]
    assert all("train/filtered_groups" in m and "train/served_prompts" in m for m in train)
    seqs = sum(m["train/served_prompts"] for m in train) * cfg.rl.group_size
    per_seq = train[0]["compute/flops_update"] / (3 * cfg.rl.prompts_per_step * cfg.rl.group_size)
    assert train[-1]["compute/flops_rollout"] == pytest.approx(seqs * per_seq, rel=0.35)  # every round
    # killed after step 2's checkpoint, resumed: the same steps 3 and 4
    work = tmp_path / "b"
    first = list(run_trial(cfg, work, log=lambda *_: None))[:3]
    assert first[-1][1] is not None                      # step 2 wrote a checkpoint
    rest = list(run_trial(cfg, work, resume_from=first[-1][1], log=lambda *_: None))
    keys = ("train/filtered_groups", "train/served_prompts", "train/reward_mean", "val/pass_at_1")
    for (a, _), (b, _) in zip(full[3:], rest):
        assert {k: a.get(k) for k in keys} == {k: b.get(k) for k in keys}
