"""The SFT warm start on the verl backend (``core/backends/verl_sft.py``): the overrides compose
against verl 0.9.1's installed ``sft_trainer_engine`` config and carry our settings (CPU and
real-scale GPU mode), ``--dry-run`` prints the SFT command before ``main_ppo``'s, and one real
run of verl's own SFT trainer on the CPU makes a base that loads, learned (verl's logged loss
and the held-out loss fell, greedy answers took the worked examples' form) and is reused from
the cache without running anything the second time."""
import json
import subprocess
from pathlib import Path

import pytest

from core.config import expand, load

TINY = ["model=xs", "~grid.axes.data", "backend=verl", "device=cpu",
        "data.d_sft=64", "sft.steps=20", "sft.batch_size=16"]
TEACHER = "data.sft_source={teacher:qwq-32b}"   # guru has no worked examples: synthesised ones


def _trial(tmp_path, extra=()):
    cfg = load("sft_rl_ratio", [*TINY, f"cache_dir={tmp_path}/cache", *extra])
    return expand(cfg)[0][1]


def test_cpu_overrides_compose_against_verls_sft_config(tmp_path):
    from core.backends.verl_sft import compose_sft, sft_command, sft_folder, sft_overrides
    t = _trial(tmp_path)
    data_file = tmp_path / "work" / "data" / "sft.parquet"
    c = compose_sft(sft_overrides(t, data_file, tmp_path / "work"))
    assert c.data.train_files == str(data_file) and c.data.messages_key == "messages"
    assert c.data.train_batch_size == 16 and c.data.truncation == "error"
    assert c.trainer.total_training_steps == 20 and c.trainer.total_epochs * (64 // 16) >= 20
    assert c.optim.lr == t.sft_lr == t.size.sft_lr and c.optim.weight_decay == 0.0
    assert list(c.optim.betas) == [0.9, 0.98] and c.optim.clip_grad == 1.0
    assert (c.optim.lr_scheduler_type, c.optim.lr_warmup_steps, c.optim.min_lr_ratio) == ("cosine", 2, 0.0)
    assert c.optim.zero_indexed_step is False
    assert list(c.checkpoint.save_contents) == ["hf_model"] and c.trainer.resume_mode == "disable"
    assert c.trainer.default_local_dir == str(tmp_path / "work" / "checkpoints")
    assert "models/qwen2-h64" in c.model.path                       # the tiny random init
    # cpu mode: one logical GPU, FSDP2 with fp32 parameters and compute, sdpa, padded batches
    assert (c.trainer.device, c.trainer.n_gpus_per_node, c.engine.strategy) == ("cpu", 1, "fsdp2")
    assert dict(c.engine.mixed_precision) == {"param_dtype": "fp32", "reduce_dtype": "fp32",
                                              "buffer_dtype": "fp32"}
    assert c.model.override_config.attn_implementation == "sdpa" and not c.model.use_remove_padding
    assert sft_command(t, data_file, tmp_path)[1:3] == ["-m", "verl.trainer.sft_trainer_ray"]
    assert sft_folder(t).parent == (tmp_path / "cache" / "sft").resolve()


def test_base_key_is_the_local_warm_starts(tmp_path):
    from core.backends.sft import base_key
    from core.backends.verl_sft import sft_folder
    a, b = _trial(tmp_path), _trial(tmp_path, ["seed=1", "rl.lr=1e-3", "data.d_rl=32"])
    assert sft_folder(a).name == f"xs-{base_key(a)}-verl" == sft_folder(b).name   # RL settings share it
    assert sft_folder(_trial(tmp_path, ["sft.steps=21"])) != sft_folder(a)


def test_gpu_overrides_take_the_sizes_resources_and_actor_settings(tmp_path):
    from core.backends.verl_sft import compose_sft, sft_overrides
    cfg = load("model_scaling", ["scale=r1", "data.d_sft=1000", "sft.steps=100", "sft.batch_size=64", TEACHER,
                                 f"cache_dir={tmp_path}"])
    trials = {t.model: t for _, t in expand(cfg)}
    c = compose_sft(sft_overrides(trials["qwq-32b"], tmp_path / "sft.parquet", tmp_path))
    assert (c.trainer.nnodes, c.trainer.n_gpus_per_node, c.trainer.device) == (16, 8, "cuda")
    assert c.engine.ulysses_sequence_parallel_size == 8 and c.engine.param_offload is True
    assert c.model.path == "Qwen/QwQ-32B"
    assert c.optim.lr == 5e-6 and c.data.max_length == 4096 + 16384   # no data measured yet
    assert c.model.use_remove_padding is True and c.model.enable_gradient_checkpointing is True
    c7 = compose_sft(sft_overrides(trials["r1-7b"], tmp_path / "sft.parquet", tmp_path))
    assert c7.engine.ulysses_sequence_parallel_size == 1 and c7.data.max_token_len_per_gpu == 40960
    from core.errors import ConfigError
    with pytest.raises(ConfigError, match="sft.batch_size"):       # 48 over 32 data-parallel ranks
        sft_overrides(load("model_scaling", ["scale=r1", "model=r1-7b", "~grid.axes.model",
                                             "data.d_sft=1000", "sft.steps=10", "sft.batch_size=48", TEACHER]),
                      tmp_path / "sft.parquet", tmp_path)


def test_dry_run_prints_the_sft_command_once_per_base_before_main_ppo(tmp_path):
    from core.backends.verl import dry_run
    cfg = load("sft_rl_ratio", [*TINY, "+grid.axes.seed=[0,1]", f"cache_dir={tmp_path}/cache"])
    text = dry_run(cfg, expand(cfg))
    assert text.count("verl.trainer.sft_trainer_ray") == 1 and text.count("verl.trainer.main_ppo") == 2
    assert text.index("sft_trainer_ray") < text.index("main_ppo")
    assert "RAY_RUNTIME_ENV_HOOK=core.backends.verl_sft.ray_runtime_env" in text
    base = expand(cfg)[0][1]
    from core.backends.verl_sft import sft_folder
    assert f"actor_rollout_ref.model.path={sft_folder(base)}" in text   # main_ppo starts from the base


# an R1-Distill-like chat template: an assistant turn loses its reasoning (all up to </think>),
# and the generation prompt opens the reasoning (DeepSeek-R1-Distill-Qwen's template does both)
R1_LIKE = ("{% for m in messages %}{% if m['role'] == 'user' %}{{ '<|im_start|>U:' + m['content'] }}"
           "{% else %}{% set c = m['content'] %}{% if '</think>' in c %}{% set c = c.split('</think>')[-1] %}"
           "{% endif %}{{ '<|im_start|>A:' + c + '<|im_end|>' }}{% endif %}{% endfor %}"
           "{% if add_generation_prompt %}{{ '<|im_start|>A:<think>' }}{% endif %}")


def test_verls_dataset_gets_the_local_warm_starts_tokens(tmp_path):
    """verl reads the parquet through PromptResponseDataset: exactly sft_batch's tokens and loss
    mask; verl's own MultiTurnSFTDataset would drop an R1 response's reasoning."""
    from verl.utils.dataset.multiturn_sft_dataset import MultiTurnSFTDataset

    from core import data, models
    from core.backends.sft import sft_batch
    from core.backends.verl_sft import write_sft_data
    from core.backends.verl_sft_data import PromptResponseDataset
    t, tok = _trial(tmp_path), models.build_char_tokenizer()
    path = write_sft_data(t, tmp_path / "d", tok)
    assert json.loads((tmp_path / "d" / "sft_data.json").read_text())["records"] == 64
    ds = PromptResponseDataset(str(path), tok, {"max_length": 64})
    records = data.select(t, "sft")
    ids, mask, labels = sft_batch(tok, records[:8])
    for i in range(8):
        keep = mask[i].bool()
        assert ds[i]["input_ids"].tolist() == ids[i][keep].tolist()
        assert ds[i]["loss_mask"].tolist() == (labels[i][keep] != -100).int().tolist()
    tok.chat_template = R1_LIKE
    r1 = tmp_path / "r1.parquet"
    import pyarrow as pa
    import pyarrow.parquet as pq
    pq.write_table(pa.Table.from_pylist([{"messages": [{"role": "user", "content": "31+5="},
                                                       {"role": "assistant", "content": "30+6 is 36</think>#36"}]}]), r1)
    trained = lambda ex: tok.decode(ex["input_ids"][ex["loss_mask"].bool()])   # noqa: E731
    assert trained(PromptResponseDataset(str(r1), tok, {"max_length": 64})[0]) == "30+6 is 36</think>#36<|im_end|>"
    verls = MultiTurnSFTDataset(str(r1), tok, {"max_length": 64, "pad_mode": "no_padding"})[0]
    assert "30+6" not in trained(verls)                                # the reasoning is gone there


def _heldout_loss(folder: str, records: list[dict]) -> float:
    import torch

    from core import models
    from core.backends.sft import sft_batch
    model, tok = models.load(folder)
    ids, mask, labels = sft_batch(tok, records)
    with torch.no_grad():
        return model(input_ids=ids, attention_mask=mask, position_ids=(mask.cumsum(1) - 1).clamp(min=0),
                     labels=labels, use_cache=False).loss.item()


def _greedy(folder: str, records: list[dict]) -> list[str]:
    from core import models
    from core.backends.rollout import encode_prompts, render
    model, tok = models.load(folder)
    ids, mask = encode_prompts(tok, render(tok, records))
    out = model.generate(input_ids=ids, attention_mask=mask, do_sample=False, max_new_tokens=6,
                         eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id)
    return tok.batch_decode(out[:, ids.shape[1]:], skip_special_tokens=True)


@pytest.mark.slow
def test_verl_sft_on_the_cpu_trains_a_base_that_loads_and_is_cached(tmp_path, monkeypatch):
    import ray

    from core import data
    from core.backends.verl_sft import ensure_sft_base, read_metrics, source
    t = _trial(tmp_path)
    logs = []
    ray.init(num_cpus=12, num_gpus=1, include_dashboard=False, configure_logging=False)
    try:
        folder, flops = ensure_sft_base(t, logs.append)
    finally:
        ray.shutdown()
    assert Path(folder).name.endswith("-verl") and (Path(folder) / "model.safetensors").exists()
    meta = json.loads((Path(folder) / "sft.json").read_text())
    assert meta["flops"] == flops > 0 and meta["steps"] == 20 and meta["d_sft"] == 64
    steps = read_metrics(Path(folder) / "metrics.jsonl")
    assert sorted(steps) == list(range(1, 21))                       # verl's own log, every step
    loss = [steps[s]["train/loss"] for s in sorted(steps)]
    assert loss[-1] < 0.6 * loss[0], loss
    heldout = data.select(t, "eval", n=32)                            # prompts SFT never saw
    before, after = _heldout_loss(source(t), heldout), _heldout_loss(folder, heldout)
    assert after < 0.6 * before, (before, after)
    train = data.select(t, "sft")[:16]
    shaped = lambda texts: sum(x.startswith("#") for x in texts)    # noqa: E731  the answer's form
    assert shaped(_greedy(folder, train)) > shaped(_greedy(source(t), train))
    print(f"verl SFT: loss {loss[0]:.3f} -> {loss[-1]:.3f}; held-out {before:.3f} -> {after:.3f}; "
          f"{meta['seconds']}s; greedy {_greedy(folder, train)[:4]}")

    def no_run(*a, **k):
        raise AssertionError("the cached base must be reused")
    monkeypatch.setattr(subprocess, "run", no_run)
    assert ensure_sft_base(t, logs.append) == (folder, flops)
    assert "reusing cached base" in logs[-1]


@pytest.mark.slow
def test_a_verl_trial_with_d_sft_runs_sfts_trainer_then_main_ppo_from_its_base(tmp_path):
    """Issue 17's "SFT then RL" on the CPU verl path, end to end: ``run`` makes the base with
    verl's SFT trainer and ``main_ppo`` trains from that base (``model_path`` is the SFT folder)."""
    import ray

    from core.backends.verl import CPU_MODE_LOGICAL_CPUS, model_path
    from core.backends.verl_sft import sft_folder
    from core.backends.verl_trial import run
    t = _trial(tmp_path, ["rl.steps=1", "eval.every=1", "data.d_rl=8", "data.n_eval=4",
                          "rl.prompts_per_step=4", "rl.group_size=2", "eval.n_samples=2", "eval.k_max=2"])
    ray.init(num_cpus=max(12, 1 + CPU_MODE_LOGICAL_CPUS), num_gpus=1, include_dashboard=False,
             configure_logging=False)
    try:
        steps = {m["step"]: m for m, _ in run(t, tmp_path / "trial", log=lambda *a: None)}
    finally:
        ray.shutdown()
    assert sorted(steps) == [0, 1]
    assert steps[0]["compute/flops_sft"] > 0 and "val/pass_at_1" in steps[1]
    assert model_path(t) == str(sft_folder(t)) and (Path(model_path(t)) / "sft.json").exists()
