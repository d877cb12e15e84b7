"""The embedded local backend: GRPO on the CPU with Hugging Face models.

``run`` reads top to bottom: ``setup`` builds the trial (the SFT warm start, cached; the frozen
reference, only with a KL term or a learned RM; the data; the reward and curriculum plugins;
the optimiser; and, when resuming, the checkpoint's state), then every RL step is four named
stages:

1. ``rollout_and_score``: the curriculum's prompts, G samples each, scored by the reward
   plugin (the seam where a multi-turn environment plugs in); a filtering curriculum may drop
   groups and refill them, round after round (``core/rounds.py``);
2. ``curriculum.update``: the curriculum hears every sample's reward and correctness;
3. ``advantages``: GRPO's group-relative advantages (``verl.trainer.ppo.core_algos``, the same
   functions verl's distributed run uses);
4. ``update``: the clipped policy loss, the KL term when set, one optimiser step.

``rl.algorithm=sft`` runs the matched control instead: the same base continues SFT for the same
steps on the warm start's data, with the same evaluations, so an RL gain can be read against
what more supervised training would have given. Only the objective differs: the control uses
RL's optimiser, learning rate (``rl.lr`` / the size's ``rl_lr``) and warmup (a fresh Adam at the
SFT peak rate on an annealed base oscillates: m fell from 0.74 to 0.22 pass@1 in 20 steps).

At step 0, every ``eval.every`` steps and at the end it evaluates pass@k and writes a
checkpoint (policy, optimiser, RNG, curriculum state, FLOPs), and yields the step's metrics with
the checkpoint folder, so a killed trial resumes where it stopped.
"""
from __future__ import annotations

import json
import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from core import data, models
from core.backends import multiturn as mt
from core.backends import rollout as ro
from core.backends.sft import sft_batch, warm_start
from core.config import Config
from core.flops import FlopLedger, FlopModel
from core.metrics import pass_at_k_metrics
from core.reward import build_reward
from core.rounds import StepRounds
from core.scoring import outcomes, score


def _verl():
    """verl's GRPO advantage, policy loss, loss aggregation and KL estimators."""
    from omegaconf import OmegaConf
    from verl.trainer.ppo import core_algos
    return core_algos, OmegaConf


@dataclass
class Trial:
    """Everything one trial holds while it runs."""
    cfg: Config
    workdir: Path
    base: str
    model: object
    tokenizer: object
    ref: object | None
    train_records: list[dict]
    eval_records: list[dict]
    reward: object
    curriculum: object
    opt: torch.optim.Optimizer
    sched: object
    flop_model: FlopModel
    rm_flop_model: FlopModel | None
    rm_metrics: dict
    sft_flops: float
    ledger: FlopLedger = field(default_factory=FlopLedger)
    start: int = 0
    sft_records: list[dict] | None = None     # rl.algorithm=sft: the control's data
    sft_gen: torch.Generator | None = None


def load_data(cfg: Config):
    return data.select(cfg, "train"), data.select(cfg, "eval")


def grade_ungraded(cfg: Config, records: list[dict], base: str, model, tokenizer, reward,
                   log=print) -> None:
    """Give prompts without a pass rate a difficulty level from the base policy's own pass
    rate (``data.grade_samples`` samples each, cached per base policy; ``core.grading``)."""
    import hashlib

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

    grading.grade_with_policy(records, sample_fn, lambda b, t, n: score(reward, b, t, n)[1],
                              cfg.data.grade_samples, Path(cfg.cache_dir) / "grades" / f"{key}.json", log)
    model.train(was_training)


@torch.no_grad()
def evaluate(model, tokenizer, reward, records, cfg: Config, flop_model: FlopModel,
             chunk: int = 512) -> tuple[dict[str, float], float, np.ndarray]:
    """pass@k per domain and overall on the eval prompts; (metrics, FLOPs, per-prompt pass@1).
    Environment episodes are played instead (``multiturn.evaluate_trial``: success is correct)."""
    if records and mt.is_episode(records[0]):
        return mt.evaluate_trial(model, tokenizer, records, cfg, flop_model)
    n, correct, lengths, flops = cfg.eval.n_samples, [], [], 0.0
    per = max(1, chunk // n)
    for i in range(0, len(records), per):
        batch = records[i:i + per]
        roll = ro.sample(model, tokenizer, ro.render(tokenizer, batch), n,
                         cfg.rl.max_new_tokens, cfg.eval.temperature, cfg.eval.top_p)
        _, acc = score(reward, batch, roll.texts, n)
        correct.append(acc.reshape(len(batch), n))
        lengths += roll.response_mask.sum(dim=1).tolist()
        flops += flop_model.forward(roll.padded_seqlens())
    correct = np.concatenate(correct)
    domains = [r["extra_info"].get("domain") or r["ability"] for r in records]
    levels = [int(r["extra_info"].get("difficulty") or 0) for r in records]
    metrics = pass_at_k_metrics(correct, domains, cfg.eval.k_max, levels=levels)
    metrics["val/response_length"] = float(np.mean(lengths))
    return metrics, flops, correct.mean(axis=1)


# --- setup ------------------------------------------------------------------------------------
def setup(cfg: Config, workdir: Path, resume: Path | None, log, opened: list) -> Trial:
    """Build the trial, and restore its state from ``resume`` (a checkpoint it wrote)."""
    from core.plugins import registry
    torch.set_num_threads(max(1, int(cfg.size.resources.cpus)))
    base, sft_flops = warm_start(cfg, log)
    model, tokenizer = models.load(str(resume / "policy") if resume else base)
    train_records, eval_records = load_data(cfg)
    reward, rm_flop_model, rm_metrics = build_reward(cfg, log)
    opened.append(reward)
    # the frozen initial policy: the KL term's reference, and with a learned RM the policy's KL
    # to it (d = sqrt(KL) of the over-optimisation curves) even without a KL penalty
    ref = (models.load(base)[0].eval().requires_grad_(False)
           if cfg.rl.kl_coef or rm_flop_model is not None else None)
    grade_ungraded(cfg, train_records, base, model if not resume else models.load(base)[0],
                   tokenizer, reward, log)
    spec = registry().get("curricula", cfg.curriculum.name)
    curriculum = spec.factory(train_records, seed=cfg.seed, **cfg.curriculum.options)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.rl_lr, weight_decay=0.0, betas=(0.9, 0.99))
    trial = Trial(cfg, Path(workdir), base, model, tokenizer, ref, train_records, eval_records,
                  reward, curriculum, opt, None, FlopModel.from_config(model.config), rm_flop_model,
                  rm_metrics, sft_flops)
    if cfg.rl.algorithm == "sft":
        trial.sft_records = data.select(cfg, "sft")
        trial.sft_gen = torch.Generator().manual_seed(cfg.seed + 1)
    if resume:
        _restore(trial, resume, log)
    warmup = cfg.rl.warmup_steps   # linear warmup, built after a resumed optimiser so it continues
    trial.sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda i: min(1.0, (i + 1) / (warmup + 1)), last_epoch=trial.start - 1 if resume else -1)
    if not resume:
        # the same seed gives the same trajectory whether the SFT base came from the cache or was
        # just trained (training it and building tiny models move the global RNG)
        torch.manual_seed(cfg.seed)
    return trial


def _restore(trial: Trial, resume: Path, log) -> None:
    state = json.loads((resume / "trainer.json").read_text())
    trial.ledger, trial.start = FlopLedger.from_state(state["flops"]), state["step"]
    trial.opt.load_state_dict(torch.load(resume / "optimizer.pt"))
    torch.set_rng_state(torch.load(resume / "rng.pt"))
    if state.get("curriculum") is not None:
        trial.curriculum.load_state_dict(state["curriculum"])
    if trial.sft_gen is not None and (resume / "sft_rng.pt").exists():
        trial.sft_gen.set_state(torch.load(resume / "sft_rng.pt"))
    log(f"[rl {trial.cfg.model} seed {trial.cfg.seed}] resumed at step {trial.start} from {resume}")


# --- the four stages of an RL step ------------------------------------------------------------
@dataclass
class Episodes:
    """One step's samples: G per prompt, grouped by prompt, with their rewards."""
    prompts: list[dict]
    roll: ro.Rollout
    rewards: np.ndarray
    acc: np.ndarray


def rollout_and_score(t: Trial, prompts: list[dict]) -> Episodes:
    """G samples per prompt from the current policy, scored by the reward plugin; for
    environment episodes, G episodes per record played turn by turn (``multiturn.play``): the
    reward is the episode's return, correct is success."""
    cfg, G = t.cfg, t.cfg.rl.group_size
    t.model.eval()
    if mt.is_episode(prompts[0]):
        roll, flops = mt.play(t.model, t.tokenizer, prompts, G, cfg, t.flop_model)
        t.ledger.add("rollout", flops)
        return Episodes(prompts, roll, roll.returns.astype(float), roll.success.copy())
    roll = ro.sample(t.model, t.tokenizer, ro.render(t.tokenizer, prompts), G,
                     cfg.rl.max_new_tokens, cfg.rl.temperature, cfg.rl.top_p)
    t.ledger.add("rollout", t.flop_model.forward(roll.padded_seqlens()))
    rewards, acc = score(t.reward, prompts, roll.texts, G)
    if t.rm_flop_model is not None:
        t.ledger.add("rm", t.rm_flop_model.forward(roll.padded_seqlens()))
    return Episodes(prompts, roll, rewards, acc)


def advantages(ep: Episodes, group_size: int) -> torch.Tensor:
    """GRPO (verl): the reward sits on each response's last token; group-normalised."""
    core_algos, _ = _verl()
    mask = ep.roll.response_mask.float()
    last = (ep.roll.response_mask.sum(dim=1) - 1).clamp(min=0)
    token_rewards = torch.zeros_like(mask)
    token_rewards[torch.arange(len(last)), last] = torch.tensor(ep.rewards, dtype=torch.float32)
    group_ids = np.repeat(np.arange(len(ep.prompts)), group_size)
    adv, _ = core_algos.compute_grpo_outcome_advantage(token_level_rewards=token_rewards,
                                                       response_mask=mask, index=group_ids)
    return adv


def update(t: Trial, ep: Episodes, adv: torch.Tensor) -> dict[str, float]:
    """One on-policy step: the old log-probs are this forward's, detached (verl recomputes them
    in a separate pass; with one update per batch the two are identical, so no recompute FLOPs
    are spent or counted here)."""
    core_algos, OmegaConf = _verl()
    cfg, roll = t.cfg, ep.roll
    mask, R = roll.response_mask.float(), roll.response_ids.shape[1]
    ref_logp = None
    if t.ref is not None:
        with torch.no_grad():
            ref_logp = ro.token_logprobs(t.ref, roll.input_ids, roll.attention_mask, R)
        t.ledger.add("reference", t.flop_model.forward(roll.padded_seqlens()))
    t.model.train()
    logp, entropy = ro.token_logprobs(t.model, roll.input_ids, roll.attention_mask, R, with_entropy=True)
    loss_cfg = OmegaConf.create({"clip_ratio": cfg.rl.clip_ratio, "clip_ratio_low": cfg.rl.clip_ratio,
                                 "clip_ratio_high": cfg.rl.clip_ratio, "clip_ratio_c": 3.0,
                                 "global_batch_info": {}})
    loss, pg = core_algos.get_policy_loss_fn("vanilla")(
        old_log_prob=logp.detach(), log_prob=logp, advantages=adv, response_mask=mask,
        loss_agg_mode=cfg.rl.loss_agg_mode, config=loss_cfg)
    out = {"train/kl": 0.0}
    if ref_logp is not None and cfg.rl.kl_coef:
        kl_loss = core_algos.agg_loss(core_algos.kl_penalty(logp, ref_logp, kl_penalty="low_var_kl"),
                                      mask, cfg.rl.loss_agg_mode)
        loss = loss + cfg.rl.kl_coef * kl_loss
        out["train/kl"] = kl_loss.item()
    if ref_logp is not None:   # sequence KL(pi || pi_0): per-token k3 estimates (unbiased, >= 0)
        k3 = core_algos.kl_penalty(logp.detach(), ref_logp, kl_penalty="low_var_kl")
        out["train/kl_init"] = float((k3 * mask).sum(dim=1).mean())
    out["train/grad_norm"] = _step(t, loss)
    t.ledger.add("update", t.flop_model.train(roll.padded_seqlens()))
    out.update({"train/entropy": float((entropy.detach() * mask).sum() / mask.sum()),
                "train/response_length": float(mask.sum(dim=1).mean()),
                "train/pg_loss": float(loss.item()), "train/pg_clipfrac": pg["actor/pg_clipfrac"]})
    return out


def _step(t: Trial, loss: torch.Tensor) -> float:
    loss.backward()
    grad_norm = torch.nn.utils.clip_grad_norm_(t.model.parameters(), t.cfg.rl.max_grad_norm)
    t.opt.step()
    t.sched.step()
    t.opt.zero_grad(set_to_none=True)
    return float(grad_norm)


def sft_step(t: Trial) -> dict[str, float]:
    """The matched control's step: one SFT batch of the warm start's data (same base, same
    evaluations), in place of rollout, scoring and the policy update."""
    cfg = t.cfg
    idx = torch.randint(len(t.sft_records), (cfg.sft.batch_size,), generator=t.sft_gen).tolist()
    ids, mask, labels = sft_batch(t.tokenizer, [t.sft_records[i] for i in idx])
    t.model.train()
    position_ids = (mask.cumsum(dim=1) - 1).clamp(min=0)
    loss = t.model(input_ids=ids, attention_mask=mask, position_ids=position_ids, labels=labels,
                   use_cache=False).loss
    grad_norm = _step(t, loss)
    t.ledger.add("update", t.flop_model.train([ids.shape[1]] * ids.shape[0]))
    return {"train/sft_loss": float(loss.item()), "train/grad_norm": grad_norm}


def gather(rounds: list[Episodes], chosen: list[tuple[int, int]], G: int, pad_id: int) -> Episodes:
    """The chosen groups ((round, index) pairs) of a step's rounds as one batch."""
    if len(rounds) == 1 and chosen == [(0, i) for i in range(len(rounds[0].prompts))]:
        return rounds[0]                          # a plain curriculum: one round, all of it
    order = sorted(chosen)         # round by round, as the rows below are gathered
    rows = [[i * G + g for r, i in order if r == k for g in range(G)] for k in range(len(rounds))]
    prompts = [rounds[r].prompts[i] for r, i in order]
    rewards = np.concatenate([rounds[k].rewards[rows[k]] for k in range(len(rounds)) if rows[k]])
    acc = np.concatenate([rounds[k].acc[rows[k]] for k in range(len(rounds)) if rows[k]])
    cat = mt.concat_episodes if isinstance(rounds[0].roll, mt.EpisodeRollout) else ro.concat
    roll = cat([e.roll for e in rounds], rows, pad_id)
    return Episodes(prompts, roll, rewards, acc)


def rl_step(t: Trial, step: int) -> dict[str, float]:
    """One GRPO step: the four stages, and what they report. The curriculum serves the step's
    prompts in one round, or, when it filters (``core/rounds.py``), in refill rounds whose
    rollouts all count as rollout compute."""
    G = t.cfg.rl.group_size
    rounds, served = StepRounds(t.curriculum, step - 1, t.cfg.rl.prompts_per_step), []
    todo = rounds.first()
    while todo:
        served.append(rollout_and_score(t, todo))
        todo = rounds.add(todo, outcomes(served[-1].rewards, served[-1].acc, G))
    ep = gather(served, rounds.finish(), G, t.tokenizer.pad_token_id)   # the curriculum hears all
    metrics = update(t, ep, advantages(ep, G))
    metrics.update({"train/reward_mean": float(ep.rewards.mean()), "train/acc_mean": float(ep.acc.mean())})
    if isinstance(ep.roll, mt.EpisodeRollout):    # return, success, turns, invalid actions
        metrics.update(mt.train_metrics(ep.roll))
    if rounds.filtering:
        metrics.update({f"train/{k}": float(v) for k, v in rounds.stats.items()})
    metrics.update({f"train/curriculum_{k}": float(v)
                    for k, v in getattr(t.curriculum, "metrics", dict)().items()})
    if t.rm_flop_model is not None:   # the policy optimises the proxy; gold is the rule verifier
        metrics.update({"train/proxy_reward_mean": float(ep.rewards.mean()),
                        "train/gold_reward_mean": float(ep.acc.mean()), **t.reward.metrics()})
        from core.rm import onpolicy_pair_acc   # does the RM hold up on the moving policy?
        on_policy = onpolicy_pair_acc(ep.rewards, ep.acc, G)
        if np.isfinite(on_policy):
            metrics["rm/onpolicy_pair_acc"] = on_policy
    return metrics


# --- evaluation and checkpoints ---------------------------------------------------------------
def eval_and_checkpoint(t: Trial, step: int) -> tuple[dict, Path]:
    """pass@k on the eval prompts, then a checkpoint of everything a resume needs (the last
    two are kept)."""
    t.model.eval()
    metrics, flops, per_prompt = evaluate(t.model, t.tokenizer, t.reward, t.eval_records, t.cfg, t.flop_model)
    t.ledger.add("eval", flops)
    # per-prompt pass@1, for gains with bootstrap intervals over prompts and seeds
    (t.workdir / "evals").mkdir(exist_ok=True)
    domains = [r["extra_info"].get("domain") or r["ability"] for r in t.eval_records]
    (t.workdir / "evals" / f"step_{step:06d}.json").write_text(
        json.dumps({"step": step, "pass_at_1": per_prompt.tolist(), "domains": domains}))
    metrics["eval/per_prompt_pass_at_1"] = per_prompt.tolist()
    metrics["eval/per_prompt_domain"] = domains      # per-domain gains (transfer) with intervals
    ckpt = t.workdir / "checkpoints" / f"step_{step:06d}"
    t.model.save_pretrained(ckpt / "policy")
    t.tokenizer.save_pretrained(ckpt / "policy")
    torch.save(t.opt.state_dict(), ckpt / "optimizer.pt")
    torch.save(torch.get_rng_state(), ckpt / "rng.pt")
    if t.sft_gen is not None:
        torch.save(t.sft_gen.get_state(), ckpt / "sft_rng.pt")
    (ckpt / "trainer.json").write_text(json.dumps({"step": step, "flops": t.ledger.state(),
                                                   "curriculum": t.curriculum.state_dict()}))
    for old in sorted((t.workdir / "checkpoints").glob("step_*"))[:-2]:
        shutil.rmtree(old, ignore_errors=True)
    return metrics, ckpt


# --- the loop ---------------------------------------------------------------------------------
def run(cfg: Config, workdir: Path, resume: Path | None = None,
        log=print) -> Iterator[tuple[dict[str, float], Path | None]]:
    """Train one policy; yields (metrics, checkpoint folder or None) once per RL step."""
    opened: list = []     # reward functions with pools or sessions to close at the end
    try:
        yield from _run(cfg, Path(workdir), resume, log, opened)
    finally:
        for thing in opened:
            getattr(thing, "close", lambda: None)()


def _run(cfg: Config, workdir: Path, resume: Path | None, log, opened: list):
    t = setup(cfg, workdir, resume, log, opened)
    if resume is None:   # step 0: the warm-started base before any RL
        metrics, ckpt = eval_and_checkpoint(t, 0)
        yield {**metrics, **t.ledger.metrics(), **t.rm_metrics, "compute/flops_sft": t.sft_flops,
               "step": 0}, ckpt
    t0 = time.time()
    for step in range(t.start + 1, cfg.rl.steps + 1):
        metrics = sft_step(t) if cfg.rl.algorithm == "sft" else rl_step(t, step)
        metrics.update({"step": step, "compute/flops_sft": t.sft_flops})
        ckpt = None
        last = step == cfg.rl.steps or (cfg.rl.max_flops is not None
                                       and t.ledger.metrics()["compute/flops_total"] >= cfg.rl.max_flops)
        if step % cfg.eval.every == 0 or last:
            val, ckpt = eval_and_checkpoint(t, step)
            metrics.update(val)
            eta = (time.time() - t0) / (step - t.start) * (cfg.rl.steps - step) if not last else 0.0
            log(f"[{cfg.rl.algorithm} {cfg.model} seed {cfg.seed}] step {step}/{cfg.rl.steps} "
                f"pass@1 {val['val/pass_at_1']:.3f} pass@{cfg.eval.k_max} "
                f"{val['val/creativity_index']:.3f} (ETA {eta:.0f}s)")
        metrics.update(t.ledger.metrics())
        yield metrics, ckpt
        if last:
            return                   # rl.steps done, or the compute budget (rl.max_flops) spent
