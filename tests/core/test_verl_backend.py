"""The verl backend on the CPU: config translation composed against verl's installed Hydra
tree for every grid, the reward bridge loaded by verl's own reward manager, the
validation-dump parser, and the dry run. Launching main_ppo needs GPUs (marked gpu)."""
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from core.backends.verl import BRIDGE, compose_verl, parse_validation_dump, verl_overrides
from core.config import expand, grid_names, load
from core.metrics import pass_at_k
from tests.conftest import ROOT

# axes that name ladder sizes get r1_distill sizes when a grid runs on verl
SIZE_AXES = {"model": "[r1-1_5b,r1-7b]", "reward.rm.size": "[r1-1_5b]"}


def _verl_cfg(grid: str, extra=()):
    from core.config import compose
    raw_axes = compose(grid, [])["grid"]["axes"]
    over = ["backend=verl", "ladder=r1_distill", "model=r1-1_5b", "reward.rm.size=r1-1_5b",
            "reward.rm.url=http://rm.internal:8000"]
    over += [f"grid.axes.{k}={v}" for k, v in SIZE_AXES.items() if k in raw_axes]
    if grid == "guru":
        over += ["data.path=/data/guru"]
    return load(grid, over + list(extra))


@pytest.mark.parametrize("grid", grid_names())
def test_every_grid_composes_against_verls_config(grid, tmp_path):
    cfg = _verl_cfg(grid)
    for values, t in expand(cfg)[:2]:
        work = tmp_path / "trials" / "_".join(f"{k}={v}" for k, v in values.items())
        c = compose_verl(verl_overrides(t, work, trial="t", rm_model_id="abc123"))
        ar = c.actor_rollout_ref
        assert ar.model.path == t.size.path
        assert ar.rollout.name == "vllm" and ar.rollout.n == t.rl.group_size
        assert ar.rollout.val_kwargs.n == t.eval.n_samples
        assert ar.rollout.val_kwargs.temperature == t.eval.temperature > 0
        assert ar.actor.optim.lr == pytest.approx(t.rl_lr)
        assert c.data.train_files == str(work.resolve() / "data" / "train.parquet")
        assert c.data.train_batch_size == t.rl.prompts_per_step and c.data.shuffle is False
        assert c.trainer.total_training_steps == t.rl.steps and c.trainer.test_freq == t.eval.every
        assert c.trainer.val_before_train is True
        assert c.trainer.validation_data_dir == str(work.resolve() / "validation")
        assert list(c.trainer.logger) == ["console", "mlflow"]
        assert c.trainer.n_gpus_per_node == t.size.resources.gpus and c.trainer.nnodes == t.size.resources.nodes
        crf = c.reward.custom_reward_function
        assert crf.path == str(BRIDGE) and crf.name == "compute_score"
        assert crf.reward_kwargs.reward_name == t.reward.name
        if t.reward.name == "learned_rm":
            assert crf.reward_kwargs.rm_url == "http://rm.internal:8000"
            assert crf.reward_kwargs.rm_model_id == "abc123" and crf.reward_kwargs.rm_size == "r1-1_5b"
        assert "custom_reward_function" not in c or c.get("custom_reward_function", {}).get("path") is None


def test_passthrough_keys_win_and_sglang_is_selectable(tmp_path):
    cfg = _verl_cfg("demo", ["verl.actor_rollout_ref.actor.optim.lr=1e-7", "rl.engine=sglang",
                             "verl.trainer.critic_warmup=3", "rl.kl_coef=0.01"])
    _, t = expand(cfg)[0]
    c = compose_verl(verl_overrides(t, tmp_path))
    assert c.actor_rollout_ref.actor.optim.lr == pytest.approx(1e-7)
    assert c.actor_rollout_ref.rollout.name == "sglang" and c.trainer.critic_warmup == 3
    assert c.actor_rollout_ref.actor.use_kl_loss is True
    assert c.actor_rollout_ref.actor.kl_loss_coef == pytest.approx(0.01)


def test_dry_run_prints_a_main_ppo_command_per_trial(tmp_path):
    r = subprocess.run([sys.executable, "-m", "core.tune", "grid=model_scaling", "backend=verl",
                        "ladder=r1_distill", f"output_dir={tmp_path}", "--dry-run"],
                       cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    out = r.stdout
    assert out.count("-m verl.trainer.main_ppo") == 8          # 4 sizes x 2 seeds
    for hub in ("DeepSeek-R1-Distill-Qwen-1.5B", "DeepSeek-R1-Distill-Qwen-7B",
                "DeepSeek-R1-Distill-Qwen-14B", "Qwen/QwQ-32B"):
        assert f"actor_rollout_ref.model.path={'deepseek-ai/' if 'Deep' in hub else ''}{hub}" in out
    assert "trainer.nnodes=4" in out and "+reward.custom_reward_function.reward_kwargs.reward_name=synthetic" in out
    bad = subprocess.run([sys.executable, "-m", "core.tune", "grid=demo", "--dry-run"], cwd=ROOT,
                         capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2 and "backend=verl" in bad.stderr


def test_verl_backend_rejects_greedy_validation():
    from core.errors import UserError
    with pytest.raises(UserError, match="eval.temperature"):
        _verl_cfg("demo", ["eval.temperature=0"])


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


def _tokenizer():
    """The tiny ladder's character tokenizer plus a newline (byte-level "\u010a"), so code
    responses survive the decode verl does."""
    from transformers import Qwen2Tokenizer

    from core.models import build_char_tokenizer
    base = build_char_tokenizer()
    vocab = dict(base.get_vocab())
    vocab["\u010a"] = len(vocab)
    return Qwen2Tokenizer(vocab=vocab, merges=[], unk_token=base.pad_token, eos_token=base.eos_token,
                          pad_token=base.pad_token, bos_token=base.bos_token)


def run_in_verl(reward_kwargs: dict, samples: list[tuple]) -> list[dict]:
    """Score samples the way verl does: its config -> get_custom_reward_fn -> NaiveRewardManager."""
    from verl.experimental.reward_loop.reward_manager.naive import NaiveRewardManager
    from verl.trainer.ppo.reward import get_custom_reward_fn

    over = [f"reward.custom_reward_function.path={BRIDGE}", "reward.custom_reward_function.name=compute_score"]
    over += [f"+reward.custom_reward_function.reward_kwargs.{k}={v}" for k, v in reward_kwargs.items()]
    config = compose_verl(over)
    fn = get_custom_reward_fn(config)
    tok = _tokenizer()
    manager = NaiveRewardManager(config, tok, fn)

    async def all_():
        return [await manager.run_single(_data_proto(tok, *s)) for s in samples]
    return manager.loop.run_until_complete(all_())   # the loop the manager was built on


def test_bridge_in_naive_reward_manager_matches_the_rule_plugin():
    from plugins.rewards.synthetic import SyntheticVerifier
    samples = [("47+5=", "#52", "synthetic__arith", "52", {"domain": "arith"}),
               ("47+5=", "#53", "synthetic__arith", "52", {"domain": "arith"}),
               ("s:312=", "123", "synthetic__sort", "123", {"domain": "sort"})]
    got = run_in_verl({"reward_name": "synthetic", "format_weight": 0.1}, samples)
    direct = SyntheticVerifier(format_weight=0.1)
    for (prompt, resp, ds, gt, extra), out in zip(samples, got):
        want = direct(ds, resp, gt, extra)
        assert out["reward_score"] == pytest.approx(want.score)
        assert out["reward_extra_info"]["acc"] == want.acc
        assert out["reward_extra_info"]["pred"] == (want.pred or "")
        assert out["reward_extra_info"]["domain"] == extra["domain"]


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
        truth[f"prompt {i}"] = (domain, c)
        flags = [1.0] * c + [0.0] * (n - c)
        rng.shuffle(flags)
        for f in flags:
            rows.append({"input": f"prompt {i}", "output": "x" * 5, "gts": "y", "score": f * 0.9 + 0.05,
                         "step": 20, "acc": f, "pred": "", "domain": domain})
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

    from core.backends.verl import write_data
    cfg = _verl_cfg("demo", ["data.d_rl=64", "rl.steps=3", "rl.prompts_per_step=16", "data.n_eval=8"])
    _, t = expand(cfg)[0]
    train, val = write_data(t, tmp_path, log=lambda *a: None)
    rows = pq.read_table(train).to_pylist()
    assert len(rows) == 3 * 16 and len(pq.read_table(val).to_pylist()) == 8
    r = rows[0]
    assert set(r) == {"data_source", "prompt", "ability", "reward_model", "extra_info"}
    assert r["prompt"][0]["role"] == "user" and r["reward_model"]["style"] == "rule"
    assert r["extra_info"]["prompt_text"] == r["prompt"][0]["content"]


@pytest.mark.gpu
def test_main_ppo_runs_a_tiny_grid_on_a_gpu(tmp_path):
    """Needs CUDA, vLLM and verl[vllm] (the `gpu` extra): one verl trial end to end."""
    from core.backends.verl import run
    model = tmp_path / "model"
    from core.config import load as load_cfg
    from core.models import init_tiny
    tiny = load_cfg("demo", [])
    init_tiny(tiny.ladder.sizes["s"], model, seed=0)
    cfg = _verl_cfg("demo", [f"ladder.sizes.r1-1_5b.path={model}", "ladder.sizes.r1-1_5b.resources.gpus=1",
                             "rl.steps=2", "eval.every=1", "data.n_eval=8", "eval.n_samples=4",
                             "eval.k_max=4", "rl.prompts_per_step=8"])
    _, t = expand(cfg)[0]
    steps = list(run(t, tmp_path / "trial", log=print))
    assert [m["step"] for m, _ in steps] == [0, 1, 2]
    assert all("val/pass_at_1" in m for m, _ in steps)


def test_trial_loop_reports_each_validation_dump_and_fails_loudly(tmp_path, monkeypatch):
    """The trial side of the verl backend with a stand-in for main_ppo (a script that writes
    verl-format validation dumps): one report per dump, in step order, with our pass@k; a
    non-zero exit raises with the end of the log. main_ppo itself needs GPUs."""
    from core.backends import verl as backend
    from core.models import init_tiny
    model = init_tiny(load("demo", []).ladder.sizes["xs"], tmp_path / "model", seed=0)
    cfg = _verl_cfg("demo", [f"ladder.sizes.r1-1_5b.path={model}", "rl.steps=2", "eval.every=1",
                             "data.n_eval=4", "eval.n_samples=2", "eval.k_max=2", "data.d_rl=32",
                             "rl.prompts_per_step=8"])
    _, t = expand(cfg)[0]
    stand_in = tmp_path / "fake_main_ppo.py"
    stand_in.write_text(
        "import json, os, sys\n"
        "d = sys.argv[1]\nos.makedirs(d, exist_ok=True)\n"
        "for step in (0, 1, 2):\n"
        "    rows = [{'input': f'p{i}', 'output': 'o', 'gts': 'g', 'score': float((i + step) % 2),\n"
        "             'step': step, 'acc': float((i + step) % 2), 'pred': '', 'domain': 'arith'}\n"
        "            for i in range(4) for _ in range(2)]\n"
        "    open(os.path.join(d, f'{step}.jsonl'), 'w').write('\\n'.join(json.dumps(r) for r in rows))\n"
        "print('fake verl done')\n"
        "sys.exit(int(os.environ.get('FAKE_EXIT', '0')))\n")
    monkeypatch.setattr(backend, "command", lambda cfg, workdir, **kw: [
        sys.executable, str(stand_in), str(Path(workdir) / "validation")])
    steps = list(backend.run(t, tmp_path / "trial", log=lambda *a: None))
    assert [m["step"] for m, _ in steps] == [0, 1, 2]
    assert all(m["val/pass_at_1"] == pytest.approx(0.5) and m["val/arith/pass_at_2"] == pytest.approx(0.5)
               for m, _ in steps)
    assert steps[-1][0]["compute/flops_eval"] > steps[0][0]["compute/flops_eval"] > 0
    assert (tmp_path / "trial" / "data" / "train.parquet").exists()
    # a restarted trial does not report the same steps twice
    assert list(backend.run(t, tmp_path / "trial", log=lambda *a: None)) == []
    monkeypatch.setenv("FAKE_EXIT", "3")
    with pytest.raises(RuntimeError, match="(?s)exited with 3.*fake verl done"):
        list(backend.run(t, tmp_path / "trial2", log=lambda *a: None))
