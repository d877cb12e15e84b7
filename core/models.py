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

from core.config import Size

PAD, EOS, BOS = "<pad>", "<eos>", "<bos>"
# Printable ASCII without the whitespace controls; every character is one token.
CHARS = [c for c in string.printable if c not in "\t\n\r\x0b\x0c"]


def build_char_tokenizer():
    """A character-level Qwen2 tokenizer: Qwen2's byte-level BPE with no merges and a vocabulary
    of the printable ASCII characters, so every character is one token. Being a real
    ``Qwen2Tokenizer``, it round-trips through ``save_pretrained`` / ``AutoTokenizer`` as is."""
    from transformers import Qwen2Tokenizer
    # Byte-level BPE spells a space as "\u0120"; the other printable ASCII bytes are themselves.
    vocab = {tok: i for i, tok in enumerate([PAD, EOS, BOS, *(c if c != " " else "\u0120"
                                                              for c in CHARS)])}
    return Qwen2Tokenizer(vocab=vocab, merges=[], unk_token=PAD, eos_token=EOS,
                          pad_token=PAD, bos_token=BOS, padding_side="left")


def qwen2_config(size: Size, vocab_size: int):
    from transformers import Qwen2Config
    a = size.arch
    return Qwen2Config(
        vocab_size=vocab_size, hidden_size=a.hidden_size, num_hidden_layers=a.num_layers,
        num_attention_heads=a.num_heads, num_key_value_heads=a.num_kv_heads,
        intermediate_size=a.intermediate_size, max_position_embeddings=a.max_position_embeddings,
        tie_word_embeddings=True, pad_token_id=0, eos_token_id=1, bos_token_id=2,
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


def model_source(size: Size, cache_dir: Path, seed: int = 0) -> str:
    """Where a size loads from: its hub id / folder, or a freshly written tiny model."""
    if size.path is not None:
        return size.path
    a = size.arch
    name = f"qwen2-h{a.hidden_size}-l{a.num_layers}-a{a.num_heads}-kv{a.num_kv_heads}-i{a.intermediate_size}-s{seed}"
    return str(init_tiny(size, Path(cache_dir) / "models" / name, seed))


def load(source: str, dtype: str = "float32"):
    """(model, tokenizer) from a hub id or a local folder: one code path for both."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer
    _quiet_hf()
    tokenizer = AutoTokenizer.from_pretrained(source, padding_side="left")
    model = AutoModelForCausalLM.from_pretrained(source, dtype=getattr(torch, dtype))
    return model, tokenizer
