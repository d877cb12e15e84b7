"""The verl backend's config side, cheaply: every grid's overrides composed against verl's
installed Hydra tree (GPU mode at real scale with `scale=r1`, CPU mode on the tiny ladder), the
real-scale preset, the dry run and its cost estimate, the reward bridge inside verl's own
reward manager, the validation-dump parser and the data writer. verl's trainer itself runs in
tests/core/test_verl_cpu.py."""
import json
import subprocess
import sys

import numpy as np
import pytest

from core.backends.verl import BRIDGE, compose_verl, verl_overrides
from core.backends.verl_trial import parse_validation_dump
from core.config import expand, grid_names, load
from core.errors import ConfigError
from core.metrics import pass_at_k
from tests.conftest import ROOT

# at real scale: the grids that run there, and why the others refuse (each says what is missing)
AT_SCALE_REFUSED = {"rm_scaling": "reward.name",
                    "verl_smoke": "model", "demo": "model", "smoke": "model", "guru": "model",
                    # multi-turn runs on the CPU ladder today: scale=r1's Guru data has no environments
                    "horizon": "not a domain of dataset 'guru'"}


def _gpu_cfg(grid: str, extra=()):
    return load(grid, ["scale=r1", *extra])


def _cpu_cfg(grid: str, extra=()):
    return load(grid, ["backend=verl", "device=cpu", "data.d_sft=0", "sft.steps=0",
                       "reward.rm.url=http://rm.internal:8000", *extra]
                + (["data.path=/data/guru"] if grid == "guru" else [])
                + (["grid.axes.data.d_sft=[0]"] if grid == "sft_rl_ratio" else [])
                + (["rl.max_flops=null"] if grid == "curriculum" else []))   # verl stops at rl.steps


def _check_common(c, t, work):
    ar = c.actor_rollout_ref
    assert ar.rollout.n == t.rl.group_size and ar.rollout.val_kwargs.n == t.eval.n_samples
    assert ar.rollout.val_kwargs.temperature == t.eval.temperature > 0
    assert ar.rollout.val_kwargs.top_p == t.eval.top_p
    assert ar.actor.optim.lr == pytest.approx(t.rl_lr)
    assert c.data.train_files == str(work.resolve() / "data" / "train.parquet")
    assert c.data.train_batch_size == t.rl.prompts_per_step and c.data.shuffle is False
    from core.backends.verl_agent import episode_data, response_tokens
    # episodes: the whole conversation after the first prompt (the agent loop's budget)
    assert c.data.max_response_length == (response_tokens(t) if episode_data(t) else t.rl.max_new_tokens)
    assert c.data.max_prompt_length == t.rl.max_prompt_tokens
    assert c.trainer.total_training_steps == t.rl.steps and c.trainer.test_freq == t.eval.every
    assert c.trainer.val_before_train is True
    assert c.trainer.validation_data_dir == str(work.resolve() / "validation")
    assert list(c.trainer.logger) == ["console", "file"]    # the trial forwards verl's metrics once
    crf = c.reward.custom_reward_function
    assert crf.path == str(BRIDGE) and crf.name == "compute_score"
    assert crf.reward_kwargs.reward_name == t.reward.name
    env = c.ray_kwargs.ray_init.runtime_env.env_vars
    assert "core.backends.verl_tq" in env.VERL_USE_EXTERNAL_MODULES     # one TransferQueue per run


@pytest.mark.parametrize("grid", grid_names())
def test_every_grid_composes_at_real_scale_or_says_why_not(grid, tmp_path):
    if grid in AT_SCALE_REFUSED:
        with pytest.raises(ConfigError, match=AT_SCALE_REFUSED[grid]):
            _gpu_cfg(grid)
        return
    cfg = _gpu_cfg(grid)
    own = cfg.grid.at_scale.get("r1", {}).get("data.dataset", "guru")   # a grid's own real-scale data
    assert cfg.ladder.name == "r1_distill" and cfg.data.dataset == own and cfg.preset == "r1"
    for values, t in expand(cfg)[:2]:
        work = tmp_path / "trials" / "_".join(f"{k}={v}" for k, v in values.items())
        c = compose_verl(verl_overrides(t, work, trial="t"))
        _check_common(c, t, work)
        ar = c.actor_rollout_ref
        from core.backends.verl_sft import needs_sft, sft_folder    # d_sft > 0: from its SFT base
        assert ar.model.path == (str(sft_folder(t)) if needs_sft(t) else t.size.path)
        assert ar.rollout.name == "vllm"
        assert c.trainer.n_gpus_per_node == t.size.resources.gpus and c.trainer.nnodes == t.size.resources.nodes
        assert c.data.max_response_length == t.rl.max_new_tokens and ar.rollout.val_kwargs.n == 128
        assert t.rl.max_new_tokens == 16384 or own != "guru"     # Guru: the preset's reasoning budget
        assert ar.rollout.val_kwargs.temperature == 0.6 and ar.rollout.val_kwargs.top_p == 0.95
        # the size's own verl keys win over the preset's
        assert ar.rollout.tensor_model_parallel_size == t.size.verl["actor_rollout_ref"]["rollout"]["tensor_model_parallel_size"]
        assert ar.actor.use_dynamic_bsz is True


@pytest.mark.parametrize("grid", grid_names())
def test_every_grid_composes_in_cpu_mode(grid, tmp_path):
    cfg = _cpu_cfg(grid)
    for values, t in expand(cfg)[:2]:
        work = tmp_path / "trials" / "_".join(f"{k}={v}" for k, v in values.items())
        c = compose_verl(verl_overrides(t, work, trial="t", rm_model_id="abc123"))
        _check_common(c, t, work)
        ar = c.actor_rollout_ref
        assert ar.rollout.name == "hf" and c.trainer.device == "cpu"
        assert c.trainer.n_gpus_per_node == 1 and c.trainer.nnodes == 1
        assert ar.actor.strategy == "fsdp2" and ar.model.override_config.attn_implementation == "sdpa"
        for role in (ar.actor, ar.ref):      # the FSDP engine autocasts to bf16 unless told
            assert dict(role.fsdp_config.mixed_precision) == {
                "param_dtype": "fp32", "reduce_dtype": "fp32", "buffer_dtype": "fp32"}
        assert c.ray_kwargs.ray_init.runtime_env.env_vars.VERL_PLATFORM == "cpu"
        assert ar.model.path.endswith(f"-s{t.data.seed}")        # the tiny model's cache folder
        if t.reward.name == "learned_rm":
            crf = c.reward.custom_reward_function
            assert crf.reward_kwargs.rm_url == "http://rm.internal:8000"
            assert crf.reward_kwargs.rm_model_id == "abc123" and crf.reward_kwargs.rm_size == t.reward.rm.size


def test_r1_ladder_needs_its_preset():
    with pytest.raises(ConfigError, match="scale=r1"):
        load("model_scaling", ["backend=verl", "ladder=r1_distill"])


def test_ladder_shapes_match_their_parameter_counts():
    cfg = load("model_scaling", ["scale=r1"])
    for name, size in cfg.ladder.sizes.items():
        s = size.shape
        head = s.hidden_size // s.num_heads
        attn = s.hidden_size * (2 * s.num_heads * head + 2 * s.num_kv_heads * head) \
            + (s.num_heads + 2 * s.num_kv_heads) * head            # q, k, v biases
        mlp = 3 * s.hidden_size * s.intermediate_size + 2 * s.hidden_size   # + two norms
        n = s.num_layers * (attn + mlp) + 2 * s.vocab_size * s.hidden_size + s.hidden_size   # untied
        assert n == pytest.approx(size.params, rel=0.01), name


def test_passthrough_keys_win_and_sglang_is_selectable(tmp_path):
    cfg = _gpu_cfg("model_scaling", ["verl.actor_rollout_ref.actor.optim.lr=1e-7", "rl.engine=sglang",
                                     "verl.trainer.critic_warmup=3", "rl.kl_coef=0.01"])
    _, t = expand(cfg)[0]
    c = compose_verl(verl_overrides(t, tmp_path))
    assert c.actor_rollout_ref.actor.optim.lr == pytest.approx(1e-7)
    assert c.actor_rollout_ref.rollout.name == "sglang" and c.trainer.critic_warmup == 3
    assert c.actor_rollout_ref.actor.use_kl_loss is True
    assert c.actor_rollout_ref.actor.kl_loss_coef == pytest.approx(0.01)


def test_dry_run_prints_the_real_study_and_its_cost(tmp_path):
    r = subprocess.run([sys.executable, "-m", "core.tune", "grid=model_scaling", "scale=r1",
                        f"output_dir={tmp_path}", "--dry-run"],
                       cwd=ROOT, capture_output=True, text=True, timeout=180)
    assert r.returncode == 0, r.stderr
    out = r.stdout
    assert out.count("-m verl.trainer.main_ppo") == 8          # 4 sizes x 2 seeds
    for hub in ("DeepSeek-R1-Distill-Qwen-1.5B", "DeepSeek-R1-Distill-Qwen-7B",
                "DeepSeek-R1-Distill-Qwen-14B", "Qwen/QwQ-32B"):
        assert f"actor_rollout_ref.model.path={'deepseek-ai/' if 'Deep' in hub else ''}{hub}" in out
    assert out.count("data.max_response_length=16384") == 8
    assert out.count("actor_rollout_ref.rollout.val_kwargs.n=128") == 8
    assert "reward_kwargs.reward_name=guru" in out and "trainer.nnodes=16" in out
    total = [line for line in out.splitlines() if line.endswith("grid total")]
    assert len(total) == 1 and float(total[0].split()[-3]) > 1000    # GPU-hours, thousands
    bad = subprocess.run([sys.executable, "-m", "core.tune", "grid=smoke", "--dry-run"], cwd=ROOT,
                         capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2 and "backend=verl" in bad.stderr


def test_verl_backend_rejects_greedy_validation():
    with pytest.raises(ConfigError, match="eval.temperature"):
        _gpu_cfg("model_scaling", ["eval.temperature=0"])


# --- the reward bridge inside verl's own reward manager ---------------------------------------
def _data_proto(tokenizer, prompt: str, response: str, data_source: str, ground_truth, extra: dict):
    import torch
    from verl import DataProto
    p = tokenizer(prompt, add_special_tokens=False)["input_ids"]
    r = tokenizer(response, add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
    pad = 4
    responses = torch.tensor([r + [tokenizer.pad_token_id] * pad])
    prompts = torch.tensor([p])
    mask = torch.tensor([[1] * len(p) + [1] * len(r) + [0] * pad])
    return DataProto.from_dict(
        tensors={"prompts": prompts, "responses": responses, "attention_mask": mask},
        non_tensors={"data_source": np.array([data_source], dtype=object),
                     "reward_model": np.array([{"style": "rule", "ground_truth": ground_truth}], dtype=object),
                     "extra_info": np.array([extra], dtype=object)})


def run_in_verl(reward_kwargs: dict, samples: list[tuple]) -> list[dict]:
    """Score samples the way verl does: its config -> get_custom_reward_fn -> NaiveRewardManager."""
    from verl.experimental.reward_loop.reward_manager.naive import NaiveRewardManager
    from verl.trainer.ppo.reward import get_custom_reward_fn

    from core.models import build_char_tokenizer
    over = [f"reward.custom_reward_function.path={BRIDGE}", "reward.custom_reward_function.name=compute_score"]
    over += [f"+reward.custom_reward_function.reward_kwargs.{k}={v}" for k, v in reward_kwargs.items()]
    config = compose_verl(over)
    fn = get_custom_reward_fn(config)
    tok = build_char_tokenizer()        # "\n" is one token, so code responses survive verl's decode
    manager = NaiveRewardManager(config, tok, fn)

    async def all_():
        return [await manager.run_single(_data_proto(tok, *s)) for s in samples]
    return manager.loop.run_until_complete(all_())   # the loop the manager was built on


def test_bridge_in_naive_reward_manager_matches_the_rule_plugin():
    from plugins.rewards.synthetic import SyntheticVerifier
    samples = [("47+5=", "#52", "synthetic__arith", "52", {"domain": "arith", "index": 3}),
               ("47+5=", "#53", "synthetic__arith", "52", {"domain": "arith", "index": 3}),
               ("s:312=", "123", "synthetic__sort", "123", {"domain": "sort", "index": 4})]
    got = run_in_verl({"reward_name": "synthetic", "format_weight": 0.1}, samples)
    direct = SyntheticVerifier(format_weight=0.1)
    for (prompt, resp, ds, gt, extra), out in zip(samples, got):
        want = direct(ds, resp, gt, extra)
        assert out["reward_score"] == pytest.approx(want.score)
        assert out["reward_extra_info"]["acc"] == want.acc
        assert out["reward_extra_info"]["pred"] == (want.pred or "")
        assert out["reward_extra_info"]["domain"] == extra["domain"]
        assert out["reward_extra_info"]["prompt_index"] == extra["index"]


def test_bridge_in_naive_reward_manager_matches_the_guru_plugin():
    from plugins.rewards.guru import GuruVerifier
    tests = json.dumps({"inputs": ["2\n"], "outputs": ["4\n"]})
    samples = [("q", "so \\boxed{\\frac{1}{2}}", "math__combined", "0.5", {}),
               ("q", "```python\nprint(int(input())*2)\n```", "codegen__taco", tests, {}),
               ("q", "<answer>['a', 'b']</answer>", "logic__ordering_puzzle", '["a", "b"]', {})]
    got = run_in_verl({"reward_name": "guru"}, samples)
    v = GuruVerifier()
    try:
        for (_, resp, ds, gt, extra), out in zip(samples, got):
            assert out["reward_score"] == v(ds, resp, gt, extra).score == 1.0
            assert out["reward_extra_info"]["domain"] == ds.split("__")[0]
    finally:
        v.close()


# --- validation dumps ---------------------------------------------------------------------------
def test_validation_dump_parser_gives_unbiased_pass_at_k(tmp_path):
    rng = np.random.default_rng(0)
    n, rows, truth = 8, [], {}
    for i in range(12):
        domain = ["math", "logic"][i % 2]
        c = int(rng.integers(0, n + 1))
        truth[i] = (domain, c)
        flags = [1.0] * c + [0.0] * (n - c)
        rng.shuffle(flags)
        for f in flags:     # prompts 0/1, 2/3, ... share their text, as Guru's repeated AIME rows do
            rows.append({"input": f"prompt {i // 2}", "output": "x" * 5, "gts": "y", "score": f * 0.9 + 0.05,
                         "step": 20, "acc": f, "pred": "", "domain": domain, "prompt_index": i})
    dump = tmp_path / "20.jsonl"
    dump.write_text("\n".join(json.dumps(r) for r in rows))
    m = parse_validation_dump(dump, k_max=8)
    for k in (1, 2, 4, 8):
        want = np.mean([pass_at_k(n, c, k) for _, c in truth.values()])
        assert m[f"val/pass_at_{k}"] == pytest.approx(want)
        for d in ("math", "logic"):
            want_d = np.mean([pass_at_k(n, c, k) for dd, c in truth.values() if dd == d])
            assert m[f"val/{d}/pass_at_{k}"] == pytest.approx(want_d)
    assert m["val/creativity_index"] == m["val/pass_at_8"]
    uneven = tmp_path / "21.jsonl"
    uneven.write_text("\n".join(json.dumps(r) for r in rows[:-1]))
    with pytest.raises(ValueError, match="different sample counts"):
        parse_validation_dump(uneven, 8)


def test_write_data_follows_the_curriculum_in_verls_schema(tmp_path):
    import pyarrow.parquet as pq

    from core.backends.verl_trial import write_data
    cfg = _cpu_cfg("smoke", ["data.d_rl=64", "rl.steps=3", "rl.prompts_per_step=16", "data.n_eval=8",
                            f"cache_dir={tmp_path / 'cache'}"])
    _, t = expand(cfg)[0]
    from core import models
    models.model_source(t.size, tmp_path / "cache", seed=t.data.seed)
    train, val = write_data(t, tmp_path, log=lambda *a: None)
    rows = pq.read_table(train).to_pylist()
    assert len(rows) == 3 * 16 and len(pq.read_table(val).to_pylist()) == 8
    r = rows[0]
    assert set(r) == {"data_source", "prompt", "ability", "reward_model", "extra_info"}
    assert r["prompt"][0]["role"] == "user" and r["reward_model"]["style"] == "rule"
    assert r["extra_info"]["prompt_text"] == r["prompt"][0]["content"]
    # a prompt budget that no prompt fits is a clear error, not a verl crash later
    tight = _cpu_cfg("smoke", ["rl.max_prompt_tokens=4", f"cache_dir={tmp_path / 'cache'}"])
    with pytest.raises(ConfigError, match="rl.max_prompt_tokens"):
        write_data(expand(tight)[0][1], tmp_path / "t2", log=lambda *a: None)


@pytest.mark.gpu
def test_main_ppo_runs_a_tiny_grid_on_a_gpu(tmp_path):
    """Needs CUDA, vLLM and verl[vllm] (the `gpu` extra): one verl trial end to end."""
    from core.backends.verl_trial import run
    from core.models import init_tiny
    tiny = load("smoke", [])
    model = init_tiny(tiny.ladder.sizes["s"], tmp_path / "model", seed=0)
    cfg = load("verl_smoke", ["device=gpu", f"ladder.sizes.s.path={model}", "~ladder.sizes.s.arch",
                              "ladder.sizes.s.resources.gpus=1", "model=s", "~grid.axes.model"])
    _, t = expand(cfg)[0]
    steps = list(run(t, tmp_path / "trial", log=print))
    assert [m["step"] for m, _ in steps] == [0, 1, 2]
    assert "val/pass_at_1" in steps[0][0] and "val/pass_at_1" in steps[-1][0]
