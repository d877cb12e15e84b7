"""The same GRPO step in this trainer and in TRL's GRPOTrainer, side by side, on the CPU.

Same tiny model (ladder size ``s`` of ``tiny``, SFT'd base), same prompts, same group size G,
same number of new tokens, temperature 1 with top_k=0, one update per batch, no KL. Prints
samples (completions) per second for both and the ratio. Both run in this process, one after
the other, with the same torch thread count.
"""
from __future__ import annotations

import os
import tempfile
import time

SIZE, PROMPTS, G, NEW_TOKENS, STEPS = "s", 16, 8, 12, 8
# trl lives outside the venv (`make bench` installs it here): trl 1.x breaks verl's imports
BENCH_SITE = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), ".bench", "site")


def _import_trl():
    import sys
    if BENCH_SITE not in sys.path:
        sys.path.insert(0, BENCH_SITE)
    try:
        import trl
    except ImportError as exc:
        raise SystemExit(f"trl is not installed in {BENCH_SITE}: run `make bench` (it installs it "
                         "there, outside the venv, because trl 1.x breaks verl)") from exc
    return trl


def _cfg(cache: str, workdir: str):
    from core.config import load
    return load("demo", ["~grid.axes.model", f"model={SIZE}", f"cache_dir={cache}",
                         "data.d_sft=2000", "sft.steps=150", f"rl.steps={STEPS + 2}",
                         f"eval.every={STEPS + 2}", f"rl.prompts_per_step={PROMPTS}",
                         f"rl.group_size={G}", f"rl.max_new_tokens={NEW_TOKENS}",
                         "data.n_eval=8", "eval.n_samples=4", "eval.k_max=4",
                         # same threads as TRL gets: the trial sets torch's from this
                         f"ladder.sizes.{SIZE}.resources.cpus={os.cpu_count() or 1}"])


def ours(cfg, workdir: str) -> float:
    """Samples/s over the RL steps between the two evaluations (steps 2..STEPS+1)."""
    from core.backends import local
    stamps = {}
    for metrics, _ in local.run(cfg, workdir, log=lambda *_: None):
        stamps[metrics["step"]] = time.perf_counter()
    n_steps = STEPS
    return n_steps * PROMPTS * G / (stamps[STEPS + 1] - stamps[1])


def trl(cfg, base: str) -> float:
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer, TrainerCallback
    trl_module = _import_trl()
    GRPOConfig, GRPOTrainer = trl_module.GRPOConfig, trl_module.GRPOTrainer

    from core.backends.local import load_data
    from plugins.rewards.synthetic import SyntheticVerifier
    train, _ = load_data(cfg)
    tok = AutoTokenizer.from_pretrained(base, padding_side="left")
    model = AutoModelForCausalLM.from_pretrained(base)
    # conversational prompts: TRL renders them through the chat template, as this trainer does
    rows = [{"prompt": r["prompt"], "data_source": r["data_source"],
             "ground_truth": r["reward_model"]["ground_truth"]} for r in train]
    verify = SyntheticVerifier()

    def reward(prompts, completions, data_source, ground_truth, **_):
        texts = [c[-1]["content"] if isinstance(c, list) else c for c in completions]   # chat turns
        return [verify(d, t, g).score for t, d, g in zip(texts, data_source, ground_truth)]

    stamps = []

    class Clock(TrainerCallback):
        def on_step_end(self, args, state, control, **kw):
            stamps.append(time.perf_counter())

    out = tempfile.mkdtemp()
    args = GRPOConfig(output_dir=out, per_device_train_batch_size=PROMPTS * G, num_generations=G,
                      max_completion_length=NEW_TOKENS, temperature=1.0, top_k=0,
                      learning_rate=cfg.rl_lr, beta=0.0, num_iterations=1,
                      max_steps=STEPS + 1, use_cpu=True, report_to="none", save_strategy="no",
                      logging_steps=1000, disable_tqdm=True, seed=0, bf16=False)
    trainer = GRPOTrainer(model=model, reward_funcs=reward, args=args,
                          train_dataset=Dataset.from_list(rows), processing_class=tok,
                          callbacks=[Clock()])
    trainer.train()
    return STEPS * PROMPTS * G / (stamps[-1] - stamps[0])


def main() -> None:
    import torch
    from core.backends.sft import warm_start
    torch.set_num_threads(os.cpu_count() or 1)
    cache, work = tempfile.mkdtemp(), tempfile.mkdtemp()
    cfg = _cfg(cache, work)
    base, _ = warm_start(cfg, log=lambda *_: None)
    ours_sps = ours(cfg, work)
    trl_sps = trl(cfg, base)
    print(f"GRPO step, size {SIZE} ({cfg.size.params:,} params), {PROMPTS} prompts x G={G}, "
          f"{NEW_TOKENS} new tokens, {STEPS} timed steps, {torch.get_num_threads()} threads")
    print(f"  this trainer: {ours_sps:8.1f} samples/s")
    print(f"  TRL {_import_trl().__version__}:    {trl_sps:8.1f} samples/s")
    print(f"  ratio (ours / TRL): {ours_sps / trl_sps:.2f}x   (goal: >= 1.5x)")
