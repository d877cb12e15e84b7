"""Achieved FLOP/s of the GRPO update step against a measured fp32 matmul peak.

Both are measured here, one after the other, with the same threads: the peak from square
fp32 matmuls, the update as forward + backward + optimiser step of the policy loss on the
largest ladder size, its FLOPs counted by ``core.flops`` (verl's formula).
"""
from __future__ import annotations

import os
import time

import numpy as np

BATCH, SEQ, REPEATS = 256, 24, 5


def matmul_peak(n: int = 2048, repeats: int = 10) -> float:
    import torch
    a, b = torch.randn(n, n), torch.randn(n, n)
    torch.mm(a, b)
    best = float("inf")
    for _ in range(repeats):
        t = time.perf_counter()
        torch.mm(a, b)
        best = min(best, time.perf_counter() - t)
    return 2 * n ** 3 / best


def update_rate(size_name: str = "l") -> tuple[float, int]:
    import torch
    from omegaconf import OmegaConf
    from transformers import AutoModelForCausalLM
    from verl.trainer.ppo import core_algos

    from core.config import load
    from core.flops import FlopModel
    from core.models import count_params, qwen2_config
    from core.backends.rollout import token_logprobs
    cfg = load("demo", [])
    model = AutoModelForCausalLM.from_config(qwen2_config(cfg.ladder.sizes[size_name], 98))
    opt = torch.optim.AdamW(model.parameters(), lr=1e-5)
    ids = torch.randint(3, 98, (BATCH, SEQ))
    mask = torch.ones_like(ids)
    resp = SEQ // 2
    adv = torch.randn(BATCH, 1).expand(BATCH, resp)
    loss_fn = core_algos.get_policy_loss_fn("vanilla")
    loss_cfg = OmegaConf.create({"clip_ratio": 0.2, "clip_ratio_low": 0.2, "clip_ratio_high": 0.2,
                                 "clip_ratio_c": 3.0, "global_batch_info": {}})
    times = []
    for i in range(REPEATS + 1):
        t = time.perf_counter()
        logp = token_logprobs(model, ids, mask, resp)
        loss, _ = loss_fn(old_log_prob=logp.detach(), log_prob=logp, advantages=adv,
                          response_mask=mask[:, -resp:].float(), loss_agg_mode="token-mean",
                          config=loss_cfg)
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        if i:
            times.append(time.perf_counter() - t)
    flops = FlopModel.from_config(model.config).train([SEQ] * BATCH)
    return flops / float(np.median(times)), count_params(model)


def main() -> None:
    import torch
    torch.set_num_threads(os.cpu_count() or 1)
    peak = matmul_peak()
    rate, params = update_rate("l")
    print(f"fp32 matmul peak (2048^2, {torch.get_num_threads()} threads): {peak / 1e9:7.1f} GFLOP/s")
    print(f"GRPO update, size l ({params:,} params), {BATCH}x{SEQ} tokens: "
          f"{rate / 1e9:7.1f} GFLOP/s")
    print(f"  ratio (update / peak): {rate / peak:.2f}   (goal: >= 0.50)")
