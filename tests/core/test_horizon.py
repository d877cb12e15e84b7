"""Multi-turn environments on the local trainer and the horizon grid (issue 16): a tiny RL trial
on maze that logs return, success, turns and invalid actions; the expert warm start trains on
the expert's turns only; the ``horizon`` report section on synthetic histories; the grid
composes; verl refuses a multi-turn D_SFT with a message."""
import json
import zlib

import numpy as np
import pytest

from core.config import expand, load
from core.errors import ConfigError

TINY = ["grid.axes={seed:[0]}", "model=xs", "data.d_sft=16", "sft.steps=3", "sft.batch_size=4",
        "rl.steps=2", "eval.every=2", "data.n_eval=2", "eval.n_samples=2", "eval.k_max=2",
        "rl.prompts_per_step=2", "rl.group_size=2", "rl.max_new_tokens=3", "data.d_rl=8",
        "ladder.sizes.xs.arch.max_position_embeddings=160"]


def test_the_horizon_grid_composes_env_x_level_x_size():
    cfg = load("horizon")
    trials = expand(cfg)
    assert len(trials) == 8 and cfg.grid.report == ("horizon",)
    cells = {(t.data.domains, t.data.difficulties, t.model) for _, t in trials}
    assert cells == {(d, lv, m) for d in (("maze",), ("textnav",)) for lv in ((1,), (3,)) for m in ("xxs", "xs")}
    for _, t in trials:
        assert t.data.dataset == "environments" and t.reward.name == "env_return"
        assert t.size.arch.max_position_embeddings == 512
    from core import models            # a 512-position model is not the cached 64-position one
    from dataclasses import replace
    default = replace(t.size, arch=replace(t.size.arch, max_position_embeddings=64))
    assert models.tiny_folder(t.size, "c") != models.tiny_folder(default, "c")


def test_verl_refuses_a_multi_turn_warm_start_with_a_message():
    with pytest.raises(ConfigError, match="data.d_sft.*multi-turn expert warm start runs on the local"):
        load("horizon", ["backend=verl", "device=cpu"])
    cfg = load("horizon", ["backend=verl", "device=cpu", "data.d_sft=0", "sft.steps=0"])
    from core.backends.verl import verl_overrides
    ov = dict(o.split("=", 1) for o in verl_overrides(expand(cfg)[0][1], "/tmp/w"))
    assert ov["actor_rollout_ref.rollout.agent.agent_loop_config_path"] == "/tmp/w/agent_loops.yaml"
    assert int(ov["data.max_response_length"]) == 512 - cfg.rl.max_prompt_tokens


def test_expert_warm_start_labels_only_the_experts_turns():
    from core import models
    from core.backends import multiturn as mt
    from core.backends.sft import sft_batch
    from plugins.datasets.environments import load as load_env
    tok = models.build_char_tokenizer()
    records = load_env("train", 3, domains=["maze"], difficulties=[1], seed=0)
    ids, mask, labels = sft_batch(tok, records)
    for i, r in enumerate(records):
        seq, n_prompt, resp = mt.expert_conversation(tok, r)
        row = labels[i, -len(seq):]
        assert ids[i, -len(seq):].tolist() == seq and int(mask[i].sum()) == len(seq)
        assert (labels[i, :-len(seq)] == -100).all()
        policy = [0] * n_prompt + resp
        assert [int(v != -100) for v in row] == policy
        assert tok.decode(row[row != -100]) == "".join(a + models.IM_END for _, a in r["extra_info"]["expert"])


def test_a_tiny_local_multi_turn_rl_trial_logs_episode_metrics(tmp_path):
    from core.trial import run_trial
    cfg = load("horizon", TINY + [f"cache_dir={tmp_path}/cache"])
    _, t = expand(cfg)[0]
    steps = {m["step"]: m for m, _ in run_trial(t, tmp_path / "t", log=lambda *_: None)}
    assert sorted(steps) == [0, 1, 2]
    for s in (0, 2):
        m = steps[s]
        for k in ("val/return", "val/success", "val/turns", "val/invalid", "val/maze/pass_at_1",
                  "val/pass_at_2", "compute/flops_eval"):
            assert k in m, k
        assert m["val/pass_at_1"] == pytest.approx(m["val/success"])
        assert 1 <= m["val/turns"] <= 10 and m["val/return"] <= 0
    for s in (1, 2):
        m = steps[s]
        for k in ("train/reward_mean", "train/acc_mean", "train/turns_mean", "train/invalid_mean",
                  "train/truncated_frac", "compute/flops_rollout", "compute/flops_update"):
            assert k in m, k
        assert m["train/turns_mean"] >= 1 and m["compute/flops_rollout"] > 0
    assert steps[0]["compute/flops_sft"] > 0


SIZES = {"xs": 1.5e5, "s": 7.5e5}


def episode_run(env: str, level: int, size: str, seed: int, gain: float, n_records: int = 24):
    rng = np.random.default_rng(zlib.crc32(f"{env}{level}{size}{seed}".encode()))
    values = {"data.difficulties": f"[{level}]", "model": size, "data.domains": f"['{env}']", "seed": seed}
    tags = {f"axis.{k}": str(v) for k, v in values.items()}
    tags.update(model_size=size, params_count=str(int(SIZES[size])), grid="horizon")
    base = rng.uniform(0.0, 0.5, n_records)
    metrics = {k: {} for k in ("val/pass_at_1", "val/success", "val/return", "val/turns", "val/invalid")}
    evals = {}
    for s in (0, 4, 8):
        ev = np.clip(base + gain * s / 8 + 0.05 * rng.standard_normal(n_records), 0, 1)
        evals[s] = ev.tolist()
        metrics["val/pass_at_1"][s] = metrics["val/success"][s] = float(ev.mean())
        metrics["val/return"][s] = float(-10 + 8 * ev.mean())
        metrics["val/turns"][s], metrics["val/invalid"][s] = 8.0, 0.1
    return {"id": f"{values}", "name": str(values), "status": "FINISHED", "tags": tags,
            "params": {"seed": str(seed), "model": size, "grid.report": json.dumps(["horizon"])},
            "metrics": metrics, "evals": evals}


def test_the_horizon_section_on_synthetic_histories(tmp_path):
    from core.report import build
    gains = {("maze", 1): 0.3, ("maze", 3): 0.0, ("textnav", 1): 0.1, ("textnav", 3): 0.1}
    runs = [episode_run(env, lv, size, seed, g) for (env, lv), g in gains.items()
            for size in SIZES for seed in (0, 1)]
    parent = {"id": "p", "tags": {"grid": "horizon", "git_commit": "abc", "axes": json.dumps(
        {"data.difficulties": ["[1]", "[3]"], "model": list(SIZES), "data.domains": ["['maze']", "['textnav']"],
         "seed": [0, 1]})}}
    report = build(parent, runs, tmp_path, log=lambda _: None)
    res = report.results["horizon"]
    assert len(res.cells) == 8 and {c.seeds for c in res.cells} == {2}
    cell = {(c.env, c.horizon, c.size): c for c in res.cells}
    assert cell["maze", 1, "xs"].gain.estimate == pytest.approx(0.3, abs=0.05)
    assert not cell["maze", 1, "xs"].gain.inside_noise
    assert cell["maze", 3, "s"].gain.inside_noise and cell["maze", 3, "s"].step == 8
    maze_xs = next(s for s in res.scaling if (s.env, s.size) == ("maze", "xs"))
    assert maze_xs.diff.estimate == pytest.approx(-0.3, abs=0.06) and maze_xs.diff.high < 0
    assert not maze_xs.law.identified and maze_xs.law.reasons          # two horizons: data only
    assert all(not n.tan.identified for n in res.n_scaling)            # two sizes: data only
    assert all(n.slope is not None for n in res.n_scaling)
    md = report.tables["horizon"]
    assert md.count("\n| maze |") == 4 and "RL gain in success" in md
    assert "inside the noise" in report.tables["horizon_scaling"]
    assert (tmp_path / "horizon_curves.png").exists() and (tmp_path / "horizon_gain.png").exists()
    assert report.metrics["horizon/maze/L1/xs/gain"] == pytest.approx(cell["maze", 1, "xs"].gain.estimate)


def test_a_killed_multi_turn_trial_resumes_where_it_stopped(tmp_path):
    """A multi-turn trial stopped after step 2's checkpoint continues at step 3 and logs what an
    uninterrupted trial logs at steps 3 and 4 (weights, optimiser, RNG and FLOPs restored)."""
    from core.trial import latest_checkpoint, run_trial
    cfg = load("horizon", TINY + [f"cache_dir={tmp_path}/cache", "rl.steps=4"])
    _, t = expand(cfg)[0]
    quiet = lambda *_: None   # noqa: E731

    def numbers(m):
        return {k: v for k, v in m.items() if isinstance(v, (int, float))}

    whole = [numbers(m) for m, _ in run_trial(t, tmp_path / "whole", log=quiet)]
    for m, _ in run_trial(t, tmp_path / "killed", log=quiet):
        if m["step"] == 2:
            break                                   # the trial "dies" after step 2's checkpoint
    ckpt = latest_checkpoint(tmp_path / "killed")
    assert ckpt.name == "step_000002"
    resumed = [numbers(m) for m, _ in run_trial(t, tmp_path / "killed", resume_from=ckpt, log=quiet)]
    assert [m["step"] for m in resumed] == [3, 4]
    assert resumed == whole[3:]                     # same episodes, same updates, same FLOPs
    assert resumed[-1]["val/turns"] >= 1 and "train/turns_mean" in resumed[0]
