"""Bradley-Terry reward models: a causal-LM backbone with a scalar head
(``AutoModelForSequenceClassification``, ``num_labels=1``), saved in Hugging Face format, so a
tiny CPU checkpoint and a hub backbone load the same way. Training lives in ``core/rm.py``.

The text scored is what the policy sees and writes: the prompt through the chat template
(``core.models.render_prompt``, assistant turn opened), the response and ``<eos>``;
the reward is the head's output at the last token.
"""
from __future__ import annotations

from pathlib import Path


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
