"""SFT warm start: teach a base policy partial competence before RL, as distillation does.

The base is trained on D_SFT worked examples (prompt + marked answer) with the loss on the
response tokens only, and cached under ``<cache_dir>/sft/<key>`` where the key hashes
(ladder size, D_SFT, task config, SFT settings, seed): every trial of a grid that shares
these reuses one base, and a file lock makes concurrent trials wait instead of training twice.
"""
from __future__ import annotations

import fcntl
import hashlib
import json
import math
import time
from pathlib import Path

import torch

from core import data, models, schema
from core.config import Config, domains_for


def base_key(cfg: Config) -> str:
    size = schema.to_dict(cfg.size)
    for rl_only in ("rl_lr", "resources", "shape", "verl"):   # settings that do not change the base
        size.pop(rl_only, None)
    sel = schema.to_dict(cfg.data)
    for rl_only in ("d_rl", "n_eval", "grade_samples", "skip_bad_rows", "balance_eval"):   # not the SFT base
        sel.pop(rl_only, None)
    for unset in ("path", "sources", "sft_noise"):   # keep keys of bases trained before these existed
        if not sel[unset]:
            sel.pop(unset)
    sel["domains"] = list(domains_for(cfg, "sft"))   # the base sees the SFT domains only
    sel.pop("eval_domains", None), sel.pop("sft_domains", None)
    sft = {**schema.to_dict(cfg.sft), "lr": cfg.sft_lr}
    # v: bump when data generation or prompting changes (3: ChatML prompts, tokenizer v2)
    ident = {"size": size, "data": sel, "sft": sft, "v": 3}
    return hashlib.sha256(json.dumps(ident, sort_keys=True).encode()).hexdigest()[:16]


def sft_batch(tokenizer, records: list[dict]):
    """Input ids, attention mask and labels (-100 outside the response) for a batch; for
    environment episodes, the expert's multi-turn play with the loss on its own turns only
    (``multiturn.expert_sft_batch``)."""
    from core.backends import multiturn
    from core.backends.rollout import render
    if records and multiturn.is_episode(records[0]):
        return multiturn.expert_sft_batch(tokenizer, records)
    prompts = render(tokenizer, records)
    full = [p + r["extra_info"]["sft_response"] + tokenizer.eos_token
            for p, r in zip(prompts, records)]
    enc = tokenizer(full, return_tensors="pt", padding=True, add_special_tokens=False)
    ids, mask = enc["input_ids"], enc["attention_mask"]
    labels = ids.clone()
    prompt_lens = [len(ids) for ids in tokenizer(prompts, add_special_tokens=False)["input_ids"]]
    pad = (1 - mask).sum(dim=1)
    for i, (pl, pd) in enumerate(zip(prompt_lens, pad.tolist())):
        labels[i, : pd + pl] = -100
    return ids, mask, labels


def train_sft(cfg: Config, source: str, out: Path, log=print) -> float:
    """Train the base in ``source`` on D_SFT examples and save it to ``out``; returns FLOPs."""
    from core.flops import FlopModel
    model, tokenizer = models.load(source)
    records = data.select(cfg, "sft")
    lr = cfg.sft_lr
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.0, betas=(0.9, 0.98))
    warmup = max(1, cfg.sft.steps // 10)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min((s + 1) / warmup, 0.5 * (
        1 + math.cos(math.pi * min(1.0, (s - warmup) / max(1, cfg.sft.steps - warmup))))))
    flop_model = FlopModel.from_config(model.config)
    gen = torch.Generator().manual_seed(cfg.data.seed)
    model.train()
    flops, t0 = 0.0, time.time()
    for step in range(cfg.sft.steps):
        idx = torch.randint(len(records), (cfg.sft.batch_size,), generator=gen).tolist()
        ids, mask, labels = sft_batch(tokenizer, [records[i] for i in idx])
        position_ids = (mask.cumsum(dim=1) - 1).clamp(min=0)
        loss = model(input_ids=ids, attention_mask=mask, position_ids=position_ids,
                     labels=labels, use_cache=False).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step(), sched.step(), opt.zero_grad(set_to_none=True)
        flops += flop_model.train([ids.shape[1]] * ids.shape[0])
        if step % max(1, cfg.sft.steps // 5) == 0 or step == cfg.sft.steps - 1:
            log(f"[sft {cfg.model}] step {step + 1}/{cfg.sft.steps} loss {loss.item():.3f} "
                f"({time.time() - t0:.0f}s)")
    model.eval()
    tmp = out.with_name(out.name + ".tmp")
    model.save_pretrained(tmp)
    tokenizer.save_pretrained(tmp)
    (tmp / "sft.json").write_text(json.dumps({"flops": flops, "steps": cfg.sft.steps,
                                              "d_sft": cfg.data.d_sft, "lr": lr}))
    tmp.rename(out)
    return flops


def warm_start(cfg: Config, log=print) -> tuple[str, float]:
    """The folder of this trial's base policy (SFT'd and cached) and the SFT FLOPs spent."""
    cache = Path(cfg.cache_dir).resolve()
    source = models.model_source(cfg.size, cache, seed=cfg.data.seed)
    if cfg.data.d_sft == 0:
        return source, 0.0
    out = cache / "sft" / f"{cfg.model}-{base_key(cfg)}"
    out.parent.mkdir(parents=True, exist_ok=True)
    with open(out.with_suffix(".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)   # a second trial waits here, then reuses the base
        if not (out / "sft.json").exists():
            train_sft(cfg, source, out, log)
        else:
            log(f"[sft {cfg.model}] reusing cached base {out.name}")
    return str(out), json.loads((out / "sft.json").read_text())["flops"]
