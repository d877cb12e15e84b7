"""FLOPs accounting from the model config and the token counts actually processed.

The dense term follows verl's ``_estimate_qwen2_flops`` exactly (so the update term agrees
with verl's counter), split into forward and training: a forward pass costs
``2 * dense_N`` per token plus ``2 * seqlen^2 * head_dim * heads * layers`` per sequence for
attention; a training step (forward + backward) costs three times that. Generation with a KV
cache processes each token once, so a rollout of a sequence costs one forward over its final
length. verl counts only the update; the platform counts every phase itself:

- ``compute/flops_rollout``:   sampling the G responses per prompt
- ``compute/flops_recompute``: the old-policy log-probs forward (only when it is not free)
- ``compute/flops_reference``: the frozen reference forward (only with a KL term)
- ``compute/flops_rm``:        learned reward-model forwards (only with a learned RM)
- ``compute/flops_update``:    forward + backward of the policy update
- ``compute/flops_eval``:      evaluation sampling (kept apart from training compute)
- ``compute/flops_total``:     all training phases (everything except eval)
"""
from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

PHASES = ("rollout", "recompute", "reference", "rm", "update")


@dataclass(frozen=True)
class FlopModel:
    dense_n: int          # matmul parameters per token (verl's dense_N)
    attn_per_seq2: int    # head_dim * heads * layers: attention FLOPs / 2 per seqlen^2

    @classmethod
    def from_config(cls, config) -> "FlopModel":
        """From a Hugging Face Qwen2/Llama-style config (hidden, layers, heads, kv heads)."""
        return cls.from_shape(config.hidden_size, config.num_hidden_layers, config.num_attention_heads,
                              config.num_key_value_heads, config.intermediate_size, config.vocab_size,
                              getattr(config, "head_dim", None))

    @classmethod
    def from_shape(cls, hidden: int, layers: int, heads: int, kv_heads: int, intermediate: int,
                   vocab_size: int, head_dim: int | None = None) -> "FlopModel":
        head_dim = head_dim or hidden // heads
        attn_linear = hidden * (heads * head_dim + 2 * kv_heads * head_dim + heads * head_dim)
        dense = (3 * hidden * intermediate + attn_linear) * layers + 2 * vocab_size * hidden
        return cls(dense_n=dense, attn_per_seq2=head_dim * heads * layers)

    def forward(self, seqlens: Iterable[int]) -> float:
        seqlens = list(seqlens)
        return 2.0 * self.dense_n * sum(seqlens) + 2.0 * self.attn_per_seq2 * sum(s * s for s in seqlens)

    def train(self, seqlens: Iterable[int]) -> float:
        return 3.0 * self.forward(seqlens)


@dataclass
class FlopLedger:
    """Cumulative FLOPs per phase; ``metrics()`` gives the ``compute/*`` names."""
    totals: dict[str, float] = field(default_factory=lambda: {p: 0.0 for p in (*PHASES, "eval")})

    def add(self, phase: str, flops: float) -> None:
        if phase not in self.totals:
            raise KeyError(f"unknown FLOPs phase {phase!r}; allowed: {', '.join(self.totals)}")
        self.totals[phase] += float(flops)

    def metrics(self) -> dict[str, float]:
        out = {f"compute/flops_{p}": v for p, v in self.totals.items()}
        out["compute/flops_total"] = sum(self.totals[p] for p in PHASES)
        return out

    def state(self) -> dict[str, float]:
        return dict(self.totals)

    @classmethod
    def from_state(cls, state: dict[str, float]) -> "FlopLedger":
        ledger = cls()
        ledger.totals.update(state)
        return ledger
