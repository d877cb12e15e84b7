"""Reward models for a trial: build D_RM from the policy's own samples, train, cache.

``ensure_rm(cfg)`` is what a trial calls (either backend): the RM lives in
``<cache_dir>/rm/<size>/<key>`` (a Hugging Face checkpoint), where the key hashes the RM size,
D_RM, its training settings, the policy base whose samples make the pairs, the data and the
seed; a file lock makes concurrent trials wait instead of training twice. The Serve app of
that size class (``serve/app.py``) has ``checkpoint_root=<cache_dir>/rm/<size>`` and loads the
key on demand (multiplexed), so every trial of a grid shares one endpoint per size class.

Bradley-Terry training (``train_rm``) minimises ``-log sigmoid(r(chosen) - r(rejected))``;
held-out metrics are pairwise accuracy and the expected calibration error (10 bins) of
``sigmoid(margin)`` as the probability that the chosen response is better. The model class,
its loading and its scoring live with the serving code (``serve/rm_model.py``).
"""
from __future__ import annotations

import fcntl
import hashlib
import json
import math
import os
import shutil
import time
from pathlib import Path

import numpy as np

from core import schema
from core.config import Config, with_values
from serve.rm_model import encode, load_rm, rewards

PAIR_SAMPLES = 16   # samples per prompt when looking for a right and a wrong response


def checkpoint_root(cfg: Config, size: str | None = None) -> Path:
    return Path(cfg.cache_dir).resolve() / "rm" / (size or cfg.reward.rm.size)


def rm_key(cfg: Config) -> str:
    from core.backends.sft import base_key
    rm = schema.to_dict(cfg.reward.rm)
    for serving_only in ("url", "port", "token", "max_batch_size", "timeout_s", "retries"):
        rm.pop(serving_only)
    if rm.get("negatives") == "any":      # the default: keys of RMs cached before it existed
        rm.pop("negatives")
    ident = {"rm": rm, "rm_arch": schema.to_dict(cfg.ladder.sizes[cfg.reward.rm.size]),
             "policy_base": base_key(cfg) if cfg.data.d_sft else schema.to_dict(cfg.size),
             "policy": cfg.model, "data": schema.to_dict(cfg.data), "v": 1}
    return hashlib.sha256(json.dumps(ident, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _for_size(cfg: Config, size: str) -> Config:
    return schema.build(Config, with_values(schema.to_dict(cfg), {"model": size}))


def build_pairs(cfg: Config, policy_source: str, log=print) -> tuple[list[dict], list[dict]]:
    """(train, held-out) pairs from the policy base's samples (``PAIR_SAMPLES`` per prompt, up
    to 10 x the pairs asked for in prompts), labelled by the gold verifier."""
    import torch

    from core import data, models
    from core.backends import rollout as ro
    from core.scoring import score
    from core.plugins import registry
    from core.errors import ConfigError
    from plugins.datasets.preference import PreferenceDataError, policy_pairs
    rm = cfg.reward.rm
    model, tok = models.load(policy_source)
    model.eval()
    gold = registry().get("rewards", rm.gold).factory(format_weight=0.0)

    def sample_fn(batch, n):
        with torch.no_grad():
            return ro.sample(model, tok, ro.render(tok, batch), n,
                             cfg.rl.max_new_tokens, cfg.rl.temperature, cfg.rl.top_p).texts

    def correct_fn(batch, texts, n):
        if rm.negatives == "any":
            return score(gold, batch, texts, n)[1].tolist()
        return [(s.acc >= 0.5, s.format >= 0.5) for s in gold_scores(gold, batch, texts, n)]

    out = []
    for role, n in (("rm_train", rm.d_rm), ("rm_eval", rm.n_eval_pairs)):
        prompts = data.select(cfg, role, n=10 * n)
        t = time.time()
        try:
            out.append(policy_pairs(prompts, sample_fn, correct_fn, n, PAIR_SAMPLES, seed=cfg.data.seed,
                                    negatives=rm.negatives))
        except PreferenceDataError as exc:
            key = "reward.rm.d_rm" if role == "rm_train" else "reward.rm.n_eval_pairs"
            raise ConfigError(key, n, str(exc)) from exc
        log(f"[rm] {n} {role.split('_')[1]} pairs from {cfg.model}'s samples ({time.time() - t:.0f}s)")
    return out[0], out[1]


def gold_scores(gold, records: list[dict], texts: list[str], n: int) -> list:
    """The gold verifier's ``Score`` of ``n`` responses per record (rows grouped by record)."""
    from core.backends.rollout import prompt_text
    from core.protocols import RewardItem, score_items
    items = [RewardItem(records[i // n]["data_source"], t, records[i // n]["reward_model"]["ground_truth"],
                        {**records[i // n]["extra_info"], "prompt_text": prompt_text(records[i // n])})
             for i, t in enumerate(texts)]
    return score_items(gold, items)


def ensure_rm(cfg: Config, log=print) -> tuple[str, Path, dict]:
    """(key, checkpoint folder, held-out metrics) of the RM ``cfg`` asks for; trains it once."""
    from core import models
    from core.backends.sft import warm_start
    from plugins.datasets.preference import fingerprint
    from serve.rm_model import init_rm
    rm = cfg.reward.rm
    root = checkpoint_root(cfg)
    root.mkdir(parents=True, exist_ok=True)
    key = rm_key(cfg)
    out = root / key
    with open(root / f"{key}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if (out / "rm.json").exists():
            log(f"[rm {rm.size}] reusing cached reward model {key}")
        else:
            policy_source, _ = warm_start(cfg, log)
            train_pairs, eval_pairs = build_pairs(cfg, policy_source, log)
            rm_cfg = _for_size(cfg, rm.size)
            backbone = warm_start(rm_cfg, log)[0] if rm.init == "base" else models.model_source(
                rm_cfg.size, Path(cfg.cache_dir).resolve(), seed=cfg.data.seed)
            init = init_rm(backbone, root / f"{key}.init", seed=cfg.data.seed)
            metrics = train_rm(str(init), out, train_pairs, eval_pairs, rm.steps, rm.batch_size,
                               rm.lr, seed=cfg.data.seed, log=log)
            shutil.rmtree(init, ignore_errors=True)
            info = {**metrics, "pairs_fingerprint": fingerprint(train_pairs),
                    "eval_pairs_fingerprint": fingerprint(eval_pairs), "size": rm.size,
                    "d_rm": rm.d_rm, "backbone": str(backbone), "policy_base": str(policy_source)}
            (out / "rm.json").write_text(json.dumps(info, indent=1))
    info = json.loads((out / "rm.json").read_text())
    return key, out, {k: v for k, v in info.items() if k.startswith("rm/")}


def onpolicy_pair_acc(proxy, gold_acc, group_size: int) -> float:
    """The RM's pairwise accuracy on the policy's own samples at this step: within each group
    (one prompt's ``group_size`` samples), over every (right, wrong) pair by the gold verifier,
    the share where the RM scored the right one higher (ties count half). Costs no forward
    pass: it reads the step's proxy rewards. nan when no group has both."""
    proxy = np.asarray(proxy, float).reshape(-1, group_size)
    right = np.asarray(gold_acc, bool).reshape(-1, group_size)
    wins = pairs = 0.0
    for r, ok in zip(proxy, right):
        diff = r[ok][:, None] - r[~ok][None, :]
        wins += float((diff > 0).sum() + 0.5 * (diff == 0).sum())
        pairs += diff.size
    return wins / pairs if pairs else float("nan")


def pair_metrics(model, tok, pairs: list[dict]) -> dict[str, float]:
    """Held-out pairwise accuracy, ECE of sigmoid(margin), mean margin and BT loss."""
    prompts = [p["prompt"] for p in pairs]
    rc = np.array(rewards(model, tok, prompts, [p["chosen"] for p in pairs]))
    rr = np.array(rewards(model, tok, prompts, [p["rejected"] for p in pairs]))
    m = rc - rr
    prob = 1 / (1 + np.exp(-m))
    conf, correct = np.maximum(prob, 1 - prob), (m > 0).astype(float)
    bins = np.minimum((conf - 0.5) * 20, 9).astype(int)          # 10 bins over [0.5, 1]
    ece = sum(abs(correct[bins == b].mean() - conf[bins == b].mean()) * (bins == b).mean()
              for b in range(10) if (bins == b).any())
    return {"rm/heldout_acc": float(correct.mean()), "rm/heldout_ece": float(ece),
            "rm/heldout_margin": float(m.mean()),
            "rm/heldout_loss": float(np.mean(np.logaddexp(0.0, -m)))}


def train_rm(source: str, out: Path, train_pairs: list[dict], eval_pairs: list[dict], steps: int,
             batch_size: int, lr: float, seed: int = 0, log=print) -> dict[str, float]:
    """Bradley-Terry training from the RM at ``source``; saves to ``out`` (HF format, written
    to a temporary folder and renamed) and returns the held-out metrics."""
    import torch
    import torch.nn.functional as F
    model, tok = load_rm(source)
    model.train()
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.0)
    warm = max(1, steps // 10)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min((s + 1) / warm, 0.5 * (
        1 + math.cos(math.pi * min(1.0, (s - warm) / max(1, steps - warm))))))
    start, losses = time.time(), []
    for step in range(steps):
        idx = rng.choice(len(train_pairs), size=min(batch_size, len(train_pairs)), replace=False)
        batch = [train_pairs[i] for i in idx]
        prompts = [p["prompt"] for p in batch] * 2
        ids, mask = encode(tok, prompts, [p["chosen"] for p in batch] + [p["rejected"] for p in batch])
        r = model(input_ids=ids, attention_mask=mask).logits[:, 0]
        loss = -F.logsigmoid(r[:len(batch)] - r[len(batch):]).mean()
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        losses.append(float(loss.detach()))
        if step % max(1, steps // 5) == 0 or step == steps - 1:
            log(f"[rm] step {step + 1}/{steps} loss {np.mean(losses[-20:]):.3f} ({time.time() - start:.0f}s)")
    model.eval()
    metrics = {**pair_metrics(model, tok, eval_pairs), "rm/train_loss": float(np.mean(losses[-20:])),
               "rm/train_loss_start": float(np.mean(losses[:20])), "rm/train_pairs": float(len(train_pairs)), "rm/steps": float(steps)}
    out = Path(out)
    tmp = out.with_name(f"{out.name}.tmp{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    model.save_pretrained(tmp)
    tok.save_pretrained(tmp)
    (tmp / "rm.json").write_text(json.dumps(metrics, indent=1))
    tmp.rename(out)
    log(f"[rm] held-out pairwise accuracy {metrics['rm/heldout_acc']:.3f}, "
        f"ECE {metrics['rm/heldout_ece']:.3f} -> {out}")
    return metrics
