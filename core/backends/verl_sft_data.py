"""verl's SFT dataset for the warm start (``data.custom_cls``): the local warm start's tokens.

verl's default ``MultiTurnSFTDataset`` renders every chat turn on its own through the chat
template. For the R1-Distill tokenizers that is not the text the policy is prompted with: their
template drops everything up to ``</think>`` from an assistant turn (the reasoning), and the
generation prompt it masks (``<｜Assistant｜><think>\\n``) is not the assistant turn's header.
This dataset reads the same parquet (``messages``: the prompt's turns, then the assistant's
response) and tokenizes each row exactly as ``core.backends.sft.sft_batch`` does: the prompt as
``render_prompt`` writes it (the text ``main_ppo`` and the local backend prompt with), then the
response and the tokenizer's EOS, with the loss on the response and EOS only.
"""
from __future__ import annotations

import torch
from torch.utils.data import Dataset

from core.models import render_prompt


def sft_tokens(tokenizer, messages: list[dict]) -> tuple[list[int], list[int]]:
    """(input ids, loss mask) of one worked example: the rendered prompt (mask 0), then the
    response and EOS (mask 1); the whole text is tokenized at once, as the local warm start does."""
    prompt = render_prompt(tokenizer, messages[:-1])
    ids = tokenizer(prompt + messages[-1]["content"] + tokenizer.eos_token,
                    add_special_tokens=False)["input_ids"]
    n_prompt = len(tokenizer(prompt, add_special_tokens=False)["input_ids"])
    return ids, [0] * n_prompt + [1] * (len(ids) - n_prompt)


def read_messages(parquet_files, key: str = "messages") -> list[list[dict]]:
    import pyarrow.parquet as pq
    files = [parquet_files] if isinstance(parquet_files, str) else list(parquet_files)
    return [m for f in files for m in pq.read_table(f, columns=[key]).column(key).to_pylist()]


class PromptResponseDataset(Dataset):
    """The rows of verl's chat parquet as unpadded (``pad_mode=no_padding``) examples; verl's
    ``create_sft_dataset`` builds it with this signature."""

    def __init__(self, parquet_files, tokenizer, config, processor=None, max_samples: int = -1):
        self.tokenizer = tokenizer
        self.max_length = int(config.get("max_length", 1024))
        self.messages = read_messages(parquet_files, config.get("messages_key", "messages"))
        if max_samples is not None and 0 < max_samples < len(self.messages):
            self.messages = self.messages[:max_samples]

    def __len__(self) -> int:
        return len(self.messages)

    def __getitem__(self, item: int) -> dict[str, torch.Tensor]:
        ids, mask = sft_tokens(self.tokenizer, self.messages[item])
        if len(ids) > self.max_length:
            raise ValueError(f"SFT example {item} has {len(ids)} tokens, over data.max_length="
                             f"{self.max_length}")
        return {"input_ids": torch.tensor(ids), "position_ids": torch.arange(len(ids)),
                "loss_mask": torch.tensor(mask)}
