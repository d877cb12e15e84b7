"""The cost of a grid before it runs: FLOPs by phase and GPU-hours, per trial and in total.

``python -m core.tune ... --cfg`` and ``--dry-run`` print it. The FLOPs follow the same model
as the ledger a run reports (``core/flops.py``: 2 x dense N per token forward plus attention,
3x that for a training step), phase by phase as each backend spends them:

- rollout: G samples for each of ``rl.prompts_per_step`` prompts per step, one forward over
  prompt + response (KV-cached generation);
- recompute (verl only): verl recomputes the old policy's log-probs in a second forward;
- reference: a forward of the frozen reference when ``rl.kl_coef`` is set (the local backend
  also runs it for a learned RM, to measure the KL to the initial policy);
- rm: a forward of the learned reward model;
- update: forward + backward of every sample;
- eval: ``eval.n_samples`` samples of each eval prompt at step 0, every ``eval.every`` steps
  and at the end;
- sft: the local warm start, once per distinct base (the seeds of a size share one).

Sequence lengths: the prompt lengths are measured on the selected data with the size's
tokenizer where both are at hand (else assumed, and said so); a response is
``estimate.response_fill x rl.max_new_tokens`` tokens. The local backend pads each batch to its
longest prompt (and generates until the batch's longest response), so its estimate uses the
longest prompt; verl packs sequences, so its estimate uses the mean.

GPU-hours = FLOPs / (``estimate.peak_tflops`` x ``estimate.mfu`` x 3600 x 1e12).
"""
from __future__ import annotations

from dataclasses import dataclass, field

from core.config import Config, domains_for

PHASES = ("rollout", "recompute", "reference", "rm", "update", "eval", "sft")


@dataclass(frozen=True)
class TrialCost:
    flops: dict[str, float]
    gpu_hours: float
    prompt_tokens: float
    response_tokens: float
    notes: tuple[str, ...] = field(default=())

    @property
    def train_flops(self) -> float:
        """All RL training phases (the ledger's ``compute/flops_total``)."""
        return sum(self.flops[p] for p in ("rollout", "recompute", "reference", "rm", "update"))


def flop_model(cfg: Config, size: str | None = None):
    """The FlopModel of a ladder size, without downloading anything."""
    from core.flops import FlopModel
    s = cfg.ladder.sizes[size or cfg.model]
    if s.arch is not None:
        from core.models import CHARS
        a = s.arch
        return FlopModel.from_shape(a.hidden_size, a.num_layers, a.num_heads, a.num_kv_heads,
                                    a.intermediate_size, vocab_size=3 + len(CHARS))
    if s.shape is not None:
        sh = s.shape
        return FlopModel.from_shape(sh.hidden_size, sh.num_layers, sh.num_heads, sh.num_kv_heads,
                                    sh.intermediate_size, sh.vocab_size)
    from transformers import AutoConfig
    return FlopModel.from_config(AutoConfig.from_pretrained(s.path, local_files_only=True))


def _tokenizer(cfg: Config):
    if cfg.size.arch is not None:
        from core.models import build_char_tokenizer
        return build_char_tokenizer()
    try:
        from transformers import AutoTokenizer
        return AutoTokenizer.from_pretrained(cfg.size.path, local_files_only=True)
    except Exception:
        return None


def prompt_tokens(cfg: Config, role: str) -> tuple[float, float, float, str]:
    """(mean, max) rendered prompt tokens of the selection, the mean worked-example response
    in tokens (0 without), and where the numbers come from."""
    tok = _tokenizer(cfg)
    try:
        from core import data
        records = data.select(cfg, role)
    except Exception as exc:                     # data not at hand (a hub id offline, ...)
        half = cfg.rl.max_prompt_tokens / 2
        return half, half, 0.0, f"prompts assumed {half:.0f} tokens (data not loaded: {type(exc).__name__})"
    sft = [r["extra_info"]["sft_response"] for r in records if r["extra_info"].get("sft_response")]
    if tok is None:                              # no tokenizer at hand: about 4 characters a token
        lens = [sum(len(m["content"]) for m in r["prompt"]) / 4 + 10 for r in records]
        resp = [len(x) / 4 + 1 for x in sft]
        src = "prompt tokens estimated as characters / 4 (tokenizer not downloaded)"
    else:
        from core.models import render_prompt
        lens = [len(tok(render_prompt(tok, r["prompt"]), add_special_tokens=False)["input_ids"])
                for r in records]
        resp = [len(tok(x, add_special_tokens=False)["input_ids"]) + 1 for x in sft]
        src = "prompt tokens measured on the selected data"
    lens = [min(x, cfg.rl.max_prompt_tokens) for x in lens] or [0]
    return sum(lens) / len(lens), max(lens), sum(resp) / max(1, len(resp)), src


def eval_steps(cfg: Config) -> list[int]:
    steps = {0, cfg.rl.steps} | set(range(cfg.eval.every, cfg.rl.steps + 1, cfg.eval.every))
    return sorted(steps)


def trial_cost(cfg: Config, pad: bool) -> TrialCost:
    """The estimate for one trial; ``pad``: batches padded to their longest prompt (local)."""
    from core.plugins import registry
    model = flop_model(cfg)
    e = cfg.estimate
    response = e.response_fill * cfg.rl.max_new_tokens
    mean_p, max_p, sft_resp, src_train = prompt_tokens(cfg, "train")
    mean_e, max_e, _, _ = prompt_tokens(cfg, "eval")
    train_len = (max_p if pad else mean_p) + response
    eval_len = (max_e if pad else mean_e) + response
    seqs = cfg.rl.prompts_per_step * cfg.rl.group_size * cfg.rl.steps
    fwd = model.forward([train_len] * 1) * seqs
    learned = registry().get("rewards", cfg.reward.name).kind == "learned"
    flops = dict.fromkeys(PHASES, 0.0)
    flops["rollout"] = fwd
    flops["recompute"] = fwd if cfg.backend == "verl" else 0.0
    flops["reference"] = fwd if (cfg.rl.kl_coef or (learned and cfg.backend == "local")) else 0.0
    if learned:
        flops["rm"] = flop_model(cfg, cfg.reward.rm.size).forward([train_len]) * seqs
    flops["update"] = 3 * fwd
    n_eval = len(eval_steps(cfg)) * cfg.data.n_eval * cfg.eval.n_samples
    flops["eval"] = model.forward([eval_len]) * n_eval
    if cfg.data.d_sft and cfg.sft.steps:       # both backends train the SFT base (verl: unpadded)
        sft_len = (max_p if pad else mean_p) + sft_resp
        flops["sft"] = 3 * model.forward([sft_len]) * cfg.sft.steps * cfg.sft.batch_size
    total = sum(flops.values())
    gpu_hours = total / (e.peak_tflops * 1e12 * e.mfu * 3600)
    notes = (src_train, f"responses {response:.0f} tokens ({e.response_fill:g} x rl.max_new_tokens)")
    return TrialCost(flops, gpu_hours, mean_p, response, notes)


def _sft_identity(cfg: Config) -> str:
    """Trials with the same identity share one cached SFT base (core/backends/sft.py)."""
    import json
    d = cfg.data
    return json.dumps([cfg.model, cfg.sft_lr, cfg.sft.steps, cfg.sft.batch_size, d.dataset, domains_for(cfg, "sft"),
                       d.difficulties, d.d_sft, d.seed, d.path, d.sources], default=str)


def grid_cost(trials: list[tuple[dict, Config]]) -> list[tuple[dict, TrialCost]]:
    """Per trial; a shared SFT base is counted with the first trial that needs it."""
    from dataclasses import replace

    from core.backends import get_backend
    out, bases = [], set()
    for values, t in trials:
        c = trial_cost(t, pad=get_backend(t.backend).name == "local")
        if c.flops["sft"]:
            key = _sft_identity(t)
            if key in bases:
                flops = {**c.flops, "sft": 0.0}
                c = replace(c, flops=flops, gpu_hours=c.gpu_hours * sum(flops.values()) / sum(c.flops.values()))
            bases.add(key)
        out.append((values, c))
    return out


def render(trials: list[tuple[dict, Config]]) -> str:
    """The estimate as comment lines (``#``), per trial and for the grid."""
    costs = grid_cost(trials)
    e = trials[0][1].estimate
    lines = [f"# estimated cost: FLOPs by phase; GPU-hours at {e.peak_tflops:g} TFLOP/s peak "
             f"({e.gpu}) x MFU {e.mfu:g}",
             "#   " + " ".join(f"{p:>10}" for p in PHASES) + f" {'GPU-hours':>10}  trial"]
    for values, c in costs:
        label = ", ".join(f"{k}={v}" for k, v in values.items()) or "trial"
        lines.append("#   " + " ".join(f"{c.flops[p]:10.3g}" for p in PHASES) + f" {c.gpu_hours:10.4g}  {label}")
    total = {p: sum(c.flops[p] for _, c in costs) for p in PHASES}
    hours = sum(c.gpu_hours for _, c in costs)
    lines.append("#   " + " ".join(f"{total[p]:10.3g}" for p in PHASES) + f" {hours:10.4g}  grid total")
    lines += [f"#   {n}" for n in dict.fromkeys(n for _, c in costs for n in c.notes)]
    if total["sft"]:
        lines.append("#   sft: the warm start, counted once per distinct base (seeds of a size share one)")
    return "\n".join(lines)
