"""Batched sampling and log-probabilities for causal LMs (Hugging Face ``generate``).

A prompt is a record's chat messages through the tokenizer's chat template (``core.models.
render_prompt``, as verl renders them); a response is the sampled tokens up to and including
the first ``<eos>`` (``<|im_end|>`` for ChatML models). Batches are left-padded, so position ids are derived from the attention mask
(as ``generate`` does) whenever the model runs outside ``generate``.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass
class Rollout:
    """One batch of sampled sequences. Shapes: (B, P) prompt, (B, R) response."""
    prompt_ids: torch.Tensor
    prompt_mask: torch.Tensor
    response_ids: torch.Tensor
    response_mask: torch.Tensor   # 1 on response tokens up to and including <eos>
    texts: list[str]              # decoded responses without special tokens

    @property
    def input_ids(self) -> torch.Tensor:
        return torch.cat([self.prompt_ids, self.response_ids], dim=1)

    @property
    def attention_mask(self) -> torch.Tensor:
        return torch.cat([self.prompt_mask, self.response_mask], dim=1)

    def padded_seqlens(self) -> list[int]:
        """Tokens the model processed per row: padded batches compute every position."""
        return [self.input_ids.shape[1]] * self.input_ids.shape[0]


def prompt_text(record: dict) -> str:
    """The text of a record's last user message (what a reward model reads as the prompt)."""
    return record["prompt"][-1]["content"]


def render(tokenizer, records: list[dict]) -> list[str]:
    """The prompt strings of ``records`` (chat template applied, assistant turn opened)."""
    from core.models import render_prompt
    return [render_prompt(tokenizer, r["prompt"]) for r in records]


def encode_prompts(tokenizer, texts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
    """Left-padded ids of already rendered prompt strings (no special tokens added)."""
    enc = tokenizer(texts, return_tensors="pt", padding=True, add_special_tokens=False)
    return enc["input_ids"], enc["attention_mask"]


def response_mask_from(ids: torch.Tensor, eos_id: int) -> torch.Tensor:
    """1 up to and including the first <eos>; 0 after (generate pads finished rows)."""
    is_eos = (ids == eos_id).int()
    after_eos = (is_eos.cumsum(dim=1) - is_eos) > 0
    return (~after_eos).long()


@torch.no_grad()
def sample(model, tokenizer, texts: list[str], n: int, max_new_tokens: int,
           temperature: float, top_p: float = 1.0) -> Rollout:
    """``n`` samples for each rendered prompt (``render``), rows grouped by prompt (prompt i: rows i*n..i*n+n-1).

    ``top_k=0`` matters: Hugging Face's default top_k=50 would silently truncate a
    character-level vocabulary and change the sampling distribution.
    """
    ids, mask = encode_prompts(tokenizer, texts)
    ids, mask = ids.repeat_interleave(n, dim=0), mask.repeat_interleave(n, dim=0)
    out = model.generate(input_ids=ids, attention_mask=mask, do_sample=True,
                         temperature=temperature, top_p=top_p, top_k=0,
                         max_new_tokens=max_new_tokens, eos_token_id=tokenizer.eos_token_id,
                         pad_token_id=tokenizer.pad_token_id)
    resp = out[:, ids.shape[1]:]
    rmask = response_mask_from(resp, tokenizer.eos_token_id)
    resp = torch.where(rmask.bool(), resp, torch.full_like(resp, tokenizer.pad_token_id))
    texts_out = tokenizer.batch_decode(resp, skip_special_tokens=True)
    return Rollout(ids, mask, resp, rmask, texts_out)


def token_logprobs(model, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                   n_response: int, with_entropy: bool = False):
    """Log-probs (and optionally entropies) of the last ``n_response`` tokens: (B, R)."""
    position_ids = (attention_mask.cumsum(dim=1) - 1).clamp(min=0)
    # only the positions that predict response tokens go through the LM head
    logits = model(input_ids=input_ids, attention_mask=attention_mask,
                   position_ids=position_ids, use_cache=False,
                   logits_to_keep=n_response + 1).logits
    logits = logits[:, :-1].float()
    logp_all = torch.log_softmax(logits, dim=-1)
    targets = input_ids[:, -n_response:]
    logp = logp_all.gather(-1, targets.unsqueeze(-1)).squeeze(-1)
    if not with_entropy:
        return logp
    entropy = -(logp_all.exp() * logp_all).sum(-1)
    return logp, entropy


def concat(parts: list[Rollout], rows: list[list[int]], pad_id: int) -> Rollout:
    """The given rows of several rollouts as one batch: prompts re-padded on the left and
    responses on the right to the widest part (a step whose groups came from several rounds)."""
    P = max(p.prompt_ids.shape[1] for p in parts)
    R = max(p.response_ids.shape[1] for p in parts)

    def pad(t: torch.Tensor, width: int, left: bool, value: int) -> torch.Tensor:
        fill = torch.full((t.shape[0], width - t.shape[1]), value, dtype=t.dtype)
        return torch.cat([fill, t] if left else [t, fill], dim=1)

    pick = [(p, idx) for p, idx in zip(parts, rows) if idx]
    cat = lambda f: torch.cat([f(p)[idx] for p, idx in pick])   # noqa: E731
    return Rollout(prompt_ids=cat(lambda p: pad(p.prompt_ids, P, True, pad_id)),
                   prompt_mask=cat(lambda p: pad(p.prompt_mask, P, True, 0)),
                   response_ids=cat(lambda p: pad(p.response_ids, R, False, pad_id)),
                   response_mask=cat(lambda p: pad(p.response_mask, R, False, 0)),
                   texts=[p.texts[i] for p, idx in pick for i in idx])
