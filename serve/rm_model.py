"""Bradley-Terry reward models: a causal-LM backbone with a scalar head
(``AutoModelForSequenceClassification``, ``num_labels=1``), trained on preference pairs and
saved in Hugging Face format, so a tiny CPU checkpoint and a hub backbone load the same way.

The text scored is what the policy sees and writes: the prompt through the chat template
(``core.models.render_prompt``, assistant turn opened), the response and ``<eos>``;
the reward is the head's output at the last token. Training minimises
``-log sigmoid(r(chosen) - r(rejected))``; held-out metrics are pairwise accuracy and the
expected calibration error (10 bins) of ``sigmoid(margin)`` as the probability that the
chosen response is better.
"""
from __future__ import annotations

import json
import math
import os
import shutil
import time
from pathlib import Path

import numpy as np


def init_rm(backbone: str, out: Path, seed: int = 0) -> Path:
    """A fresh RM at ``out``: ``backbone``'s weights (hub id or folder) and a new scalar head."""
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer
    torch.manual_seed(seed)
    tok = AutoTokenizer.from_pretrained(backbone, padding_side="left")
    model = AutoModelForSequenceClassification.from_pretrained(backbone, num_labels=1)
    model.config.pad_token_id = tok.pad_token_id
    out = Path(out)
    model.save_pretrained(out)
    tok.save_pretrained(out)
    return out


def load_rm(path: str, dtype: str = "float32"):
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer
    from transformers.utils import logging as hf_logging
    hf_logging.disable_progress_bar()
    tok = AutoTokenizer.from_pretrained(path, padding_side="left")
    model = AutoModelForSequenceClassification.from_pretrained(path, dtype=getattr(torch, dtype))
    return model.eval(), tok


def encode(tok, prompts: list[str], responses: list[str], max_length: int | None = None):
    from core.models import render_prompt
    texts = [render_prompt(tok, [{"role": "user", "content": p}]) + r + (tok.eos_token or "")
             for p, r in zip(prompts, responses)]
    enc = tok(texts, return_tensors="pt", padding=True, add_special_tokens=False,
              truncation=max_length is not None, max_length=max_length)
    return enc["input_ids"], enc["attention_mask"]


def rewards(model, tok, prompts: list[str], responses: list[str], batch: int = 256) -> list[float]:
    """Scalar rewards, in order (no gradient)."""
    import torch
    out: list[float] = []
    with torch.no_grad():
        for i in range(0, len(prompts), batch):
            ids, mask = encode(tok, prompts[i:i + batch], responses[i:i + batch])
            out += model(input_ids=ids, attention_mask=mask).logits[:, 0].float().tolist()
    return out


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
               "rm/train_pairs": float(len(train_pairs)), "rm/steps": float(steps)}
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
