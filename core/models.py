"""Model ladder: build tiny Qwen2 models, and load any rung the way real checkpoints load.

Tiny sizes are created from ``Qwen2Config`` (random init) with a character-level tokenizer
built with the ``tokenizers`` library, written with ``save_pretrained``, and always read back
through ``AutoModelForCausalLM`` / ``AutoTokenizer`` from a folder, exactly as
``deepseek-ai/DeepSeek-R1-Distill-Qwen-7B`` (a hub id) or a local checkpoint folder is.
"""
from __future__ import annotations

import json
import os
import shutil
import string
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from core.config import Size

# Qwen2.5-Instruct's special tokens: <|endoftext|> pads, <|im_end|> ends a turn (and is the
# EOS generation stops at), <|im_start|> opens one; there is no BOS. verl's Qwen rollout
# tokenisation needs both ChatML markers and "\n" as one token.
PAD, IM_END, IM_START = "<|endoftext|>", "<|im_end|>", "<|im_start|>"
# Printable ASCII without the whitespace controls, plus the newline: one token per character.
CHARS = [c for c in string.printable if c not in "\t\n\r\x0b\x0c"] + ["\n"]
# ChatML, as Qwen2/2.5 write it: every turn is <|im_start|>role\ncontent<|im_end|>\n and the
# generation prompt opens the assistant's turn.
CHAT_TEMPLATE = (
    "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\n' + message['content']"
    " + '<|im_end|>' + '\n' }}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}")
# Bump when the tokenizer changes: cached tiny models carry it in their folder name.
TOKENIZER_VERSION = 2


def _byte_level(c: str) -> str:
    """Byte-level BPE's spelling of an ASCII character (space is \u0120, newline \u010a)."""
    return {" ": "\u0120", "\n": "\u010a"}.get(c, c)


def build_char_tokenizer():
    """A character-level Qwen2 tokenizer: Qwen2's byte-level BPE with no merges, a vocabulary
    of the printable ASCII characters and the newline (every character is one token), the
    ChatML markers as special tokens and a ChatML chat template. Being a real
    ``Qwen2Tokenizer``, it round-trips through ``save_pretrained`` / ``AutoTokenizer`` as is,
    and a prompt is the same token sequence on the local backend and in verl."""
    from transformers import Qwen2Tokenizer
    vocab = {tok: i for i, tok in enumerate([PAD, IM_END, IM_START, *map(_byte_level, CHARS)])}
    tok = Qwen2Tokenizer(vocab=vocab, merges=[], unk_token=PAD, eos_token=IM_END,
                         pad_token=PAD, bos_token=None, padding_side="left",
                         additional_special_tokens=[IM_START, IM_END])
    tok.chat_template = CHAT_TEMPLATE
    return tok


def qwen2_config(size: Size, vocab_size: int):
    from transformers import Qwen2Config
    a = size.arch
    return Qwen2Config(
        vocab_size=vocab_size, hidden_size=a.hidden_size, num_hidden_layers=a.num_layers,
        num_attention_heads=a.num_heads, num_key_value_heads=a.num_kv_heads,
        intermediate_size=a.intermediate_size, max_position_embeddings=a.max_position_embeddings,
        tie_word_embeddings=True, pad_token_id=0, eos_token_id=1, bos_token_id=None,
        use_cache=True)


def _quiet_hf() -> None:
    """No progress bar per save/load: they would drown the grid's progress lines."""
    from transformers.utils import logging as hf_logging
    hf_logging.disable_progress_bar()


def count_params(model) -> int:
    """Distinct parameters (tied embeddings counted once)."""
    return sum(p.numel() for p in {id(p): p for p in model.parameters()}.values())


def init_tiny(size: Size, folder: Path, seed: int) -> Path:
    """Write a random-init tiny model and its tokenizer to ``folder`` (idempotent)."""
    import torch
    from transformers import AutoModelForCausalLM
    folder = Path(folder)
    if (folder / "config.json").exists():
        return folder
    _quiet_hf()
    tokenizer = build_char_tokenizer()
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(qwen2_config(size, len(tokenizer)))
    n = count_params(model)
    if size.params and size.params != n:
        raise ValueError(f"ladder size declares params={size.params} but its arch has {n}")
    tmp = folder.with_name(f"{folder.name}.tmp{os.getpid()}")
    model.save_pretrained(tmp)
    tokenizer.save_pretrained(tmp)
    (tmp / "ladder.json").write_text(json.dumps({"params": n, "seed": seed}))
    try:
        tmp.rename(folder)
    except OSError:   # another trial wrote the same model first: keep theirs
        shutil.rmtree(tmp, ignore_errors=True)
    return folder


def tiny_folder(size: Size, cache_dir: Path, seed: int = 0) -> Path:
    """The cache folder of a tiny size's random-init model (written by ``model_source``)."""
    a = size.arch
    name = (f"qwen2-h{a.hidden_size}-l{a.num_layers}-a{a.num_heads}-kv{a.num_kv_heads}"
            f"-i{a.intermediate_size}-t{TOKENIZER_VERSION}"
            # longer contexts (tiny_long) get their own folder; 64 keeps the names cached before
            f"{'' if a.max_position_embeddings == 64 else f'-p{a.max_position_embeddings}'}-s{seed}")
    return Path(cache_dir) / "models" / name


def model_source(size: Size, cache_dir: Path, seed: int = 0) -> str:
    """Where a size loads from: its hub id / folder, or a freshly written tiny model."""
    if size.path is not None:
        return size.path
    return str(init_tiny(size, tiny_folder(size, cache_dir, seed), seed))


def load(source: str, dtype: str = "float32"):
    """(model, tokenizer) from a hub id or a local folder: one code path for both."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer
    _quiet_hf()
    tokenizer = AutoTokenizer.from_pretrained(source, padding_side="left")
    model = AutoModelForCausalLM.from_pretrained(source, dtype=getattr(torch, dtype))
    return model, tokenizer


def render_prompt(tokenizer, messages: list[dict]) -> str:
    """The text a chat model is prompted with: ``messages`` (a record's ``prompt``) through
    the tokenizer's chat template, with the assistant's turn opened. verl renders prompts the
    same way, so a prompt is the same token sequence on either backend."""
    if not getattr(tokenizer, "chat_template", None):
        raise ValueError(f"tokenizer {getattr(tokenizer, 'name_or_path', '?')!r} has no chat template; "
                         "the platform prompts every model through one (verl does too)")
    return tokenizer.apply_chat_template(list(messages), add_generation_prompt=True, tokenize=False)
