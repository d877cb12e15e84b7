"""Probe harness for issue 14: SFT base -> GRPO vs SFT-continuation control, on one CPU thread.

Uses the project's tokenizer/model builder (core.models), its sampler and log-prob code
(core.backends.rollout), verl's GRPO advantage / clipped loss (as core.backends.local does),
the synthetic verifier and core.metrics.paired_gain_ci. Task variants live in probes/tasks.py.
"""
from __future__ import annotations

import os
os.environ.setdefault("OMP_NUM_THREADS", "1")
import hashlib
import json
import math
import random
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import torch

torch.set_num_threads(1)

from core import models                          # noqa: E402
from core.backends import rollout as ro          # noqa: E402
from core.config import Arch                     # noqa: E402
from core.metrics import paired_gain_ci          # noqa: E402
from plugins.rewards.synthetic import score_response  # noqa: E402

ROOT = Path(__file__).resolve().parent
CACHE = ROOT / "cache"
RESULTS = ROOT / "results.jsonl"

ARCH = {
    "xs": Arch(64, 3, 4, 2, 176),
    "s": Arch(128, 4, 4, 2, 352),
    "m": Arch(256, 6, 8, 4, 704),
    "l": Arch(384, 8, 8, 4, 1024),
}


def log(*a):
    print(time.strftime("%H:%M:%S"), *a, flush=True)


def new_model(size: str, seed: int = 0, arch: Arch | None = None):
    from transformers import AutoModelForCausalLM
    models._quiet_hf()
    tok = models.build_char_tokenizer()
    tok.padding_side = "left"
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(
        models.qwen2_config(SimpleNamespace(arch=arch or ARCH[size]), len(tok)))
    return model, tok


def save(model, tok, path: Path, extra: dict | None = None):
    tmp = path.with_name(path.name + ".tmp")
    model.save_pretrained(tmp)
    tok.save_pretrained(tmp)
    (tmp / "meta.json").write_text(json.dumps(extra or {}))
    if path.exists():
        import shutil
        shutil.rmtree(path)
    tmp.rename(path)


def load(path: Path):
    return models.load(str(path))


def key_of(d: dict) -> str:
    return hashlib.sha256(json.dumps(d, sort_keys=True, default=str).encode()).hexdigest()[:12]


# ------------------------------------------------------------------ SFT

def sft_batch(tok, records, responses, label_smoothing=0.0):
    prompts = ro.render(tok, records)
    full = [p + r + tok.eos_token for p, r in zip(prompts, responses)]
    enc = tok(full, return_tensors="pt", padding=True, add_special_tokens=False)
    ids, mask = enc["input_ids"], enc["attention_mask"]
    labels = ids.clone()
    plens = [len(x) for x in tok(prompts, add_special_tokens=False)["input_ids"]]
    pad = (1 - mask).sum(dim=1)
    for i, (pl, pd) in enumerate(zip(plens, pad.tolist())):
        labels[i, : pd + pl] = -100
    return ids, mask, labels


def lr_factor(step, steps, warmup, schedule, floor):
    if step < warmup:
        return (step + 1) / warmup
    if schedule == "constant":
        return 1.0
    frac = min(1.0, (step - warmup) / max(1, steps - warmup))
    if schedule == "cosine":
        return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * frac))
    if schedule == "linear":
        return floor + (1 - floor) * (1 - frac)
    raise ValueError(schedule)


def sft_train(model, tok, records, demo_fn, steps, lr, bs=64, wd=0.0, warmup=None,
              schedule="cosine", floor=0.0, label_smoothing=0.0, seed=0, opt=None,
              freeze=(), log_every=None, tag="sft"):
    """SFT on ``records``; each draw's response is ``demo_fn(record, rng)``. Returns the optimizer."""
    params = [p for n, p in model.named_parameters() if not any(n.startswith(f) for f in freeze)]
    if opt is None:
        opt = torch.optim.AdamW(params, lr=lr, weight_decay=wd, betas=(0.9, 0.98))
    for g in opt.param_groups:
        g["lr"], g["weight_decay"] = lr, wd
    warmup = max(1, steps // 10) if warmup is None else warmup
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: lr_factor(s, steps, warmup, schedule, floor))
    gen = torch.Generator().manual_seed(seed)
    rng = random.Random(seed)
    model.train()
    t0 = time.time()
    lossf = torch.nn.CrossEntropyLoss(ignore_index=-100, label_smoothing=label_smoothing)
    for step in range(steps):
        idx = torch.randint(len(records), (bs,), generator=gen).tolist()
        recs = [records[i] for i in idx]
        ids, mask, labels = sft_batch(tok, recs, [demo_fn(r, rng) for r in recs])
        pos = (mask.cumsum(1) - 1).clamp(min=0)
        logits = model(input_ids=ids, attention_mask=mask, position_ids=pos, use_cache=False).logits
        loss = lossf(logits[:, :-1].reshape(-1, logits.shape[-1]).float(), labels[:, 1:].reshape(-1))
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step(), sched.step(), opt.zero_grad(set_to_none=True)
        le = log_every or max(1, steps // 5)
        if step % le == 0 or step == steps - 1:
            log(f"[{tag}] {step + 1}/{steps} loss {loss.item():.4f} lr {sched.get_last_lr()[0]:.2e} "
                f"({time.time() - t0:.0f}s)")
    model.eval()
    return opt


# ------------------------------------------------------------------ eval

def correct_of(records, texts, n):
    out = np.zeros(len(texts), dtype=bool)
    for i, t in enumerate(texts):
        r = records[i // n]
        out[i] = score_response(r["data_source"], t, r["reward_model"]["ground_truth"]).acc > 0
    return out


@torch.no_grad()
def evaluate(model, tok, records, n=16, temperature=1.0, max_new=12, chunk=512, greedy=True,
             style_fn=None):
    """Per-prompt pass@1 (n samples at T), greedy correctness, and style stats."""
    model.eval()
    per = max(1, chunk // n)
    p1, styles, corr = [], [], []
    for i in range(0, len(records), per):
        b = records[i:i + per]
        roll = ro.sample(model, tok, ro.render(tok, b), n, max_new, temperature)
        c = correct_of(b, roll.texts, n).reshape(len(b), n)
        p1.append(c.mean(1))
        if style_fn:
            styles += [style_fn(t) for t in roll.texts]
            corr += c.reshape(-1).tolist()
    out = {"p1": np.concatenate(p1)}
    if greedy:
        g = []
        for i in range(0, len(records), 256):
            b = records[i:i + 256]
            ids, mask = ro.encode_prompts(tok, ro.render(tok, b))
            gen = model.generate(input_ids=ids, attention_mask=mask, do_sample=False,
                                 max_new_tokens=max_new, eos_token_id=tok.eos_token_id,
                                 pad_token_id=tok.pad_token_id)
            texts = tok.batch_decode(gen[:, ids.shape[1]:], skip_special_tokens=True)
            g.append(correct_of(b, texts, 1))
        out["greedy"] = np.concatenate(g).astype(float)
    if style_fn:
        vals, cnt = np.unique(styles, return_counts=True)
        out["styles"] = {str(v): round(float(c) / len(styles), 3) for v, c in zip(vals, cnt)}
        corr, styles = np.array(corr), np.array(styles)
        out["style_acc"] = {str(v): round(float(corr[styles == v].mean()), 3) for v in vals}
    return out


def summary(ev):
    s = {"p1": round(float(ev["p1"].mean()), 4)}
    if "greedy" in ev:
        s["greedy"] = round(float(ev["greedy"].mean()), 4)
    if "styles" in ev:
        s["styles"] = ev["styles"]
        s["style_acc"] = ev["style_acc"]
    return s


# ------------------------------------------------------------------ GRPO

def _verl():
    from omegaconf import OmegaConf
    from verl.trainer.ppo import core_algos
    return core_algos, OmegaConf


def grpo(model, tok, records, steps, lr, P=64, G=8, warmup=20, temperature=1.0, max_new=12,
         clip=0.2, kl_coef=None, ent_coef=0.0, freeze=(), seed=0, wd=0.0, eval_fn=None,
         eval_every=None, loss_agg="token-mean", tag="rl", reward_fn=None, max_grad_norm=1.0,
         norm_mult=1.0, betas=(0.9, 0.99), shared_prefix=False):
    core_algos, OmegaConf = _verl()
    torch.manual_seed(seed)
    for n, p in model.named_parameters():
        p.requires_grad_(not any(n.startswith(f) for f in freeze))
    params = [p for p in model.parameters() if p.requires_grad]
    norms = [p for n, p in model.named_parameters() if p.requires_grad and "norm" in n]
    others = [p for n, p in model.named_parameters() if p.requires_grad and "norm" not in n]
    opt = torch.optim.AdamW([{"params": others, "lr": lr}, {"params": norms, "lr": lr * norm_mult}],
                            lr=lr, weight_decay=wd, betas=tuple(betas))
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda i: min(1.0, (i + 1) / (warmup + 1)))
    loss_cfg = OmegaConf.create({"clip_ratio": clip, "clip_ratio_low": clip, "clip_ratio_high": clip,
                                 "clip_ratio_c": 3.0, "global_batch_info": {}})
    policy_loss = core_algos.get_policy_loss_fn("vanilla")
    advantage = core_algos.get_adv_estimator_fn("grpo")
    ref = None
    if kl_coef:
        import copy
        ref = copy.deepcopy(model).eval().requires_grad_(False)
    order, rng = [], random.Random(f"{seed}")
    hist = []
    t0 = time.time()
    for step in range(1, steps + 1):
        model.eval()
        batch = []
        while len(batch) < P:
            if not order:
                order = list(range(len(records)))
                rng.shuffle(order)
            batch.append(records[order.pop()])
        roll = ro.sample(model, tok, ro.render(tok, batch), G, max_new, temperature)
        if reward_fn is None:
            acc = correct_of(batch, roll.texts, G).astype(np.float32)
            rewards = acc
        else:
            rewards, acc = reward_fn(batch, roll.texts, G)
        mask = roll.response_mask.float()
        last = (roll.response_mask.sum(1) - 1).clamp(min=0)
        tr = torch.zeros_like(mask)
        tr[torch.arange(len(last)), last] = torch.tensor(rewards, dtype=torch.float32)
        adv, _ = advantage(token_level_rewards=tr, response_mask=mask,
                           index=np.repeat(np.arange(len(batch)), G))
        R = roll.response_ids.shape[1]
        model.train()
        if shared_prefix:
            logp, ent = token_logprobs_shared(model, roll, G, with_entropy=True)
        else:
            logp, ent = ro.token_logprobs(model, roll.input_ids, roll.attention_mask, R, with_entropy=True)
        loss, _ = policy_loss(old_log_prob=logp.detach(), log_prob=logp, advantages=adv,
                              response_mask=mask, loss_agg_mode=loss_agg, config=loss_cfg)
        if ref is not None:
            with torch.no_grad():
                ref_logp = ro.token_logprobs(ref, roll.input_ids, roll.attention_mask, R)
            kl = core_algos.kl_penalty(logp, ref_logp, kl_penalty="low_var_kl")
            loss = loss + kl_coef * core_algos.agg_loss(kl, mask, loss_agg)
        if ent_coef:
            loss = loss - ent_coef * core_algos.agg_loss(ent, mask, loss_agg)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, max_grad_norm)
        opt.step(), sched.step(), opt.zero_grad(set_to_none=True)
        frac_mixed = float(np.mean([0 < acc[i * G:(i + 1) * G].mean() < 1 for i in range(len(batch))]))
        h = {"step": step, "acc": float(np.mean(acc)), "ent": float((ent.detach() * mask).sum() / mask.sum()),
             "mixed": frac_mixed, "len": float(mask.sum(1).mean())}
        if eval_fn and eval_every and step % eval_every == 0 and step != steps:
            h["eval"] = summary(eval_fn(model))
        hist.append(h)
        if step % 10 == 0 or step == steps or "eval" in h:
            log(f"[{tag}] {step}/{steps} train acc {h['acc']:.3f} mixed {frac_mixed:.2f} ent {h['ent']:.3f} "
                f"len {h['len']:.1f} {h.get('eval', '')} ({time.time() - t0:.0f}s)")
    for p in model.parameters():
        p.requires_grad_(True)
    model.eval()
    return hist


# ------------------------------------------------------------------ intervals

def ci(before, after, seed=0):
    g, lo, hi = paired_gain_ci(np.atleast_2d(before), np.atleast_2d(after), seed=seed)
    return [round(g, 4), round(lo, 4), round(hi, 4)]


def fmt_ci(c):
    return f"{c[0]:+.3f} [{c[1]:+.3f}, {c[2]:+.3f}]"


def record_result(res: dict):
    with open(RESULTS, "a") as f:
        f.write(json.dumps(res, default=lambda o: o.tolist() if hasattr(o, "tolist") else str(o)) + "\n")


def token_logprobs_shared(model, roll, G: int, with_entropy: bool = False):
    """Same values as ro.token_logprobs(model, roll.input_ids, roll.attention_mask, R), but each
    prompt is run once (not G times): its KV cache (with grad) is repeated G times and only the
    response tokens run per sample. Exact up to float rounding; gradients flow through the cache."""
    from transformers import DynamicCache
    pid, pmask = roll.prompt_ids[::G], roll.prompt_mask[::G]
    ppos = (pmask.cumsum(1) - 1).clamp(min=0)
    cache = DynamicCache()
    out = model(input_ids=pid, attention_mask=pmask, position_ids=ppos, past_key_values=cache,
                use_cache=True, logits_to_keep=1)
    first = out.logits[:, -1:].repeat_interleave(G, dim=0)          # predicts response token 0
    cache = out.past_key_values
    cache.batch_repeat_interleave(G)
    R = roll.response_ids.shape[1]
    plen = roll.prompt_mask.sum(1, keepdim=True)
    rpos = plen + torch.arange(R).unsqueeze(0)
    out2 = model(input_ids=roll.response_ids, attention_mask=roll.attention_mask, position_ids=rpos,
                 past_key_values=cache, use_cache=True)
    logits = torch.cat([first, out2.logits[:, :-1]], dim=1).float()
    logp_all = torch.log_softmax(logits, dim=-1)
    logp = logp_all.gather(-1, roll.response_ids.unsqueeze(-1)).squeeze(-1)
    if not with_entropy:
        return logp
    return logp, -(logp_all.exp() * logp_all).sum(-1)
