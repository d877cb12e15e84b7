"""The embedded local backend: GRPO on the CPU (or one GPU) with Hugging Face models.

Reads top to bottom: ``run`` sets up the policy (SFT warm start, cached), the frozen reference
(only with a KL term), the RL prompt stream (curriculum plugin) and the reward (reward plugin),
then loops: sample G responses per prompt, score them, compute GRPO advantages and the clipped
policy loss with ``verl.trainer.ppo.core_algos`` (the same functions verl's distributed run
uses; no second copy of the maths), step the optimiser, count FLOPs. At step 0, every
``eval.every`` steps and at the end it evaluates pass@k and writes a checkpoint, and yields
the step's metrics with the checkpoint folder, so a killed trial resumes where it stopped.
"""
from __future__ import annotations

import hashlib
import json
import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch

from core import data, models
from core.backends import rollout as ro
from core.backends.sft import warm_start
from core.config import Config
from core.flops import FlopLedger, FlopModel
from core.metrics import pass_at_k_metrics


def _verl():
    """verl's GRPO advantage, policy loss, loss aggregation and KL estimators."""
    from omegaconf import OmegaConf
    from verl.trainer.ppo import core_algos
    return core_algos, OmegaConf


def load_data(cfg: Config):
    return data.select(cfg, "train"), data.select(cfg, "eval")


def score(reward_fn, records: list[dict], texts: list[str], n: int) -> tuple[np.ndarray, np.ndarray]:
    """Rewards and correctness for ``n`` responses per record (rows grouped by record)."""
    extras = [{**r["extra_info"], "prompt_text": ro.prompt_text(r)} for r in records]  # RMs read it
    items = [(r["data_source"], t, r["reward_model"]["ground_truth"], extras[i // n])
             for i, (r, t) in enumerate(zip((r for r in records for _ in range(n)), texts))]
    batch = getattr(reward_fn, "score_batch", None)   # verifiers that check in parallel
    scores = batch(items) if batch else [reward_fn(*item) for item in items]
    return np.array([s.score for s in scores]), np.array([s.acc for s in scores], dtype=bool)


def make_reward(cfg: Config, log=print):
    """(reward function, FlopModel of the learned RM or None, RM metrics). A learned RM is
    trained once (cached, ``serve.rm.ensure_rm``) and queried on its Serve endpoint."""
    from core.errors import ConfigError
    from core.plugins import registry
    spec = registry().get("rewards", cfg.reward.name)
    if spec.kind != "learned":
        return spec.factory(format_weight=cfg.reward.format_weight), None, {}
    rm = cfg.reward.rm
    if rm.url is None:
        raise ConfigError("reward.rm.url", None, "a trial outside a grid needs a running RM endpoint "
                          "(`python -m serve.rm up`); `python -m core.tune` starts one itself")
    from serve.rm import ensure_rm
    key, path, rm_metrics = ensure_rm(cfg, log)
    gold = registry().get("rewards", rm.gold).factory(format_weight=0.0)
    fn = spec.factory(url=rm.url, size=rm.size, model_id=key, token=rm.token, gold=gold,
                      format_weight=cfg.reward.format_weight, timeout_s=rm.timeout_s, retries=rm.retries)
    from transformers import AutoConfig
    return fn, FlopModel.from_config(AutoConfig.from_pretrained(path)), rm_metrics


def grade_ungraded(cfg: Config, records: list[dict], base: str, model, tokenizer, reward_fn,
                   log=print) -> None:
    """Give prompts without a pass rate a difficulty level from the base policy's own pass
    rate (``data.grade_samples`` samples each, cached per base policy; ``core.grading``)."""
    from core import grading
    if cfg.data.grade_samples <= 0 or all(r["extra_info"].get("difficulty", 0) for r in records):
        return
    key = hashlib.sha256(str(base).encode()).hexdigest()[:16]
    was_training = model.training
    model.eval()

    def sample_fn(batch, n):
        with torch.no_grad():
            return ro.sample(model, tokenizer, ro.render(tokenizer, batch), n,
                             cfg.rl.max_new_tokens, cfg.eval.temperature, cfg.eval.top_p).texts

    grading.grade_with_policy(records, sample_fn, lambda b, t, n: score(reward_fn, b, t, n)[1],
                              cfg.data.grade_samples, Path(cfg.cache_dir) / "grades" / f"{key}.json", log)
    model.train(was_training)


@torch.no_grad()
def evaluate(model, tokenizer, reward_fn, records, cfg: Config, flop_model: FlopModel,
             chunk: int = 512) -> tuple[dict[str, float], float, np.ndarray]:
    """pass@k per domain and overall on the eval prompts; (metrics, FLOPs, per-prompt pass@1)."""
    n, correct, lengths, flops = cfg.eval.n_samples, [], [], 0.0
    per = max(1, chunk // n)
    for i in range(0, len(records), per):
        batch = records[i:i + per]
        roll = ro.sample(model, tokenizer, ro.render(tokenizer, batch), n,
                         cfg.rl.max_new_tokens, cfg.eval.temperature, cfg.eval.top_p)
        _, acc = score(reward_fn, batch, roll.texts, n)
        correct.append(acc.reshape(len(batch), n))
        lengths += roll.response_mask.sum(dim=1).tolist()
        flops += flop_model.forward(roll.padded_seqlens())
    correct = np.concatenate(correct)
    domains = [r["extra_info"].get("domain") or r["ability"] for r in records]
    metrics = pass_at_k_metrics(correct, domains, cfg.eval.k_max)
    metrics["val/response_length"] = float(np.mean(lengths))
    return metrics, flops, correct.mean(axis=1)


def run(cfg: Config, workdir: Path, resume: Path | None = None,
        log=print) -> Iterator[tuple[dict[str, float], Path | None]]:
    """Train one policy; yields (metrics, checkpoint folder or None) once per RL step."""
    opened: list = []     # reward functions with pools or sessions to close at the end
    try:
        yield from _run(cfg, workdir, resume, log, opened)
    finally:
        for thing in opened:
            getattr(thing, "close", lambda: None)()


def _run(cfg: Config, workdir: Path, resume: Path | None, log, opened: list):
    core_algos, OmegaConf = _verl()
    from core.plugins import registry
    workdir = Path(workdir)
    torch.manual_seed(cfg.seed)
    torch.set_num_threads(max(1, int(cfg.size.resources.cpus)))

    # --- policy, reference, data, reward ------------------------------------------------
    base, sft_flops = warm_start(cfg, log)
    model, tokenizer = models.load(str(resume / "policy") if resume else base)
    ref = models.load(base)[0].eval().requires_grad_(False) if cfg.rl.kl_coef else None
    flop_model = FlopModel.from_config(model.config)
    train_records, eval_records = load_data(cfg)
    reward_fn, rm_flop_model, rm_metrics = make_reward(cfg, log)
    opened.append(reward_fn)
    # KL to the initial policy (d = sqrt(KL) of the RM over-optimisation curves): measured
    # against the frozen base whenever a learned RM is the reward, even with no KL penalty
    if ref is None and rm_flop_model is not None:
        ref = models.load(base)[0].eval().requires_grad_(False)
    grade_ungraded(cfg, train_records, base, model if not resume else models.load(base)[0],
                   tokenizer, reward_fn, log)
    curriculum = registry().get("curricula", cfg.curriculum.name).factory(train_records, seed=cfg.seed)
    lr = cfg.rl_lr
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.0, betas=(0.9, 0.99))
    loss_cfg = OmegaConf.create({"clip_ratio": cfg.rl.clip_ratio, "clip_ratio_low": cfg.rl.clip_ratio,
                                 "clip_ratio_high": cfg.rl.clip_ratio, "clip_ratio_c": 3.0,
                                 "global_batch_info": {}})
    policy_loss = core_algos.get_policy_loss_fn("vanilla")
    advantage = core_algos.get_adv_estimator_fn(cfg.rl.adv_estimator)

    # --- resume: optimiser, FLOPs so far, step ------------------------------------------
    ledger, start = FlopLedger(), 0
    if resume:
        state = json.loads((resume / "trainer.json").read_text())
        ledger, start = FlopLedger.from_state(state["flops"]), state["step"]
        opt.load_state_dict(torch.load(resume / "optimizer.pt"))
        torch.set_rng_state(torch.load(resume / "rng.pt"))
        log(f"[rl {cfg.model} seed {cfg.seed}] resumed at step {start} from {resume}")
    # linear warmup; built after a resumed optimiser so it continues where it stopped
    warmup = cfg.rl.warmup_steps
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda i: min(1.0, (i + 1) / (warmup + 1)),
                                              last_epoch=start - 1 if resume else -1)

    def eval_and_checkpoint(step: int) -> tuple[dict[str, float], Path]:
        model.eval()
        metrics, flops, per_prompt = evaluate(model, tokenizer, reward_fn, eval_records, cfg,
                                              flop_model)
        ledger.add("eval", flops)
        ckpt = workdir / "checkpoints" / f"step_{step:06d}"
        # per-prompt pass@1, for gains with bootstrap intervals over prompts and seeds
        (workdir / "evals").mkdir(exist_ok=True)
        (workdir / "evals" / f"step_{step:06d}.json").write_text(
            json.dumps({"step": step, "pass_at_1": per_prompt.tolist()}))
        model.save_pretrained(ckpt / "policy")
        tokenizer.save_pretrained(ckpt / "policy")
        torch.save(opt.state_dict(), ckpt / "optimizer.pt")
        torch.save(torch.get_rng_state(), ckpt / "rng.pt")
        (ckpt / "trainer.json").write_text(json.dumps({"step": step, "flops": ledger.state()}))
        for old in sorted((workdir / "checkpoints").glob("step_*"))[:-2]:   # keep the last two
            shutil.rmtree(old, ignore_errors=True)
        return metrics, ckpt

    if resume is None:   # step 0: the warm-started base before any RL
        metrics, ckpt = eval_and_checkpoint(0)
        yield {**metrics, **ledger.metrics(), **rm_metrics, "compute/flops_sft": sft_flops,
               "step": 0}, ckpt

    t0 = time.time()
    for step in range(start + 1, cfg.rl.steps + 1):
        # --- rollout: G samples per prompt, grouped by prompt -------------------------------
        model.eval()
        prompts = curriculum.batch(step - 1, cfg.rl.prompts_per_step)
        G = cfg.rl.group_size
        roll = ro.sample(model, tokenizer, ro.render(tokenizer, prompts), G,
                         cfg.rl.max_new_tokens, cfg.rl.temperature, cfg.rl.top_p)
        ledger.add("rollout", flop_model.forward(roll.padded_seqlens()))
        rewards, acc = score(reward_fn, prompts, roll.texts, G)
        if rm_flop_model is not None:
            ledger.add("rm", rm_flop_model.forward(roll.padded_seqlens()))

        # --- advantages (verl GRPO): the reward sits on each response's last token ----------
        mask = roll.response_mask.float()
        last = (roll.response_mask.sum(dim=1) - 1).clamp(min=0)
        token_rewards = torch.zeros_like(mask)
        token_rewards[torch.arange(len(last)), last] = torch.tensor(rewards, dtype=torch.float32)
        group_ids = np.repeat(np.arange(len(prompts)), G)
        adv, _ = advantage(token_level_rewards=token_rewards, response_mask=mask, index=group_ids)

        # --- reference log-probs for the KL term (frozen base) ------------------------------
        R = roll.response_ids.shape[1]
        if ref is not None:
            with torch.no_grad():
                ref_logp = ro.token_logprobs(ref, roll.input_ids, roll.attention_mask, R)
            ledger.add("reference", flop_model.forward(roll.padded_seqlens()))

        # --- update: one on-policy step, so old log-probs are this forward's, detached ------
        # (verl recomputes them in a separate pass; with a single update per batch the two
        # are identical, so no recompute FLOPs are spent or counted here)
        model.train()
        logp, entropy = ro.token_logprobs(model, roll.input_ids, roll.attention_mask, R,
                                          with_entropy=True)
        loss, pg_metrics = policy_loss(old_log_prob=logp.detach(), log_prob=logp,
                                       advantages=adv, response_mask=mask,
                                       loss_agg_mode=cfg.rl.loss_agg_mode, config=loss_cfg)
        kl_value, kl_init = 0.0, None
        if ref is not None and cfg.rl.kl_coef:
            kl = core_algos.kl_penalty(logp, ref_logp, kl_penalty="low_var_kl")
            kl_loss = core_algos.agg_loss(kl, mask, cfg.rl.loss_agg_mode)
            loss = loss + cfg.rl.kl_coef * kl_loss
            kl_value = kl_loss.item()
        if ref is not None:   # sequence KL(pi || pi_0): per-token k3 estimates (unbiased, >= 0)
            k3 = core_algos.kl_penalty(logp.detach(), ref_logp, kl_penalty="low_var_kl")
            kl_init = float((k3 * mask).sum(dim=1).mean())
        loss.backward()
        grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.rl.max_grad_norm)
        opt.step()
        sched.step()
        opt.zero_grad(set_to_none=True)
        ledger.add("update", flop_model.train(roll.padded_seqlens()))

        metrics = {
            "train/reward_mean": float(rewards.mean()), "train/acc_mean": float(acc.mean()),
            "train/kl": kl_value,
            "train/entropy": float((entropy.detach() * mask).sum() / mask.sum()),
            "train/response_length": float(mask.sum(dim=1).mean()),
            "train/pg_loss": float(loss.item()), "train/grad_norm": float(grad_norm),
            "train/pg_clipfrac": pg_metrics["actor/pg_clipfrac"], "step": step,
            "compute/flops_sft": sft_flops,
        }
        if kl_init is not None:
            metrics["train/kl_init"] = kl_init
        if rm_flop_model is not None:   # the policy optimises the proxy; gold is the rule verifier
            metrics.update({"train/proxy_reward_mean": float(rewards.mean()),
                            "train/gold_reward_mean": float(acc.mean()), **reward_fn.metrics()})
        ckpt = None
        if step % cfg.eval.every == 0 or step == cfg.rl.steps:
            val, ckpt = eval_and_checkpoint(step)
            metrics.update(val)
            eta = (time.time() - t0) / (step - start) * (cfg.rl.steps - step)
            log(f"[rl {cfg.model} seed {cfg.seed}] step {step}/{cfg.rl.steps} "
                f"reward {metrics['train/reward_mean']:.3f} pass@1 {val['val/pass_at_1']:.3f} "
                f"pass@{cfg.eval.k_max} {val['val/creativity_index']:.3f} (ETA {eta:.0f}s)")
        metrics.update(ledger.metrics())
        yield metrics, ckpt
