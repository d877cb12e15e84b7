"""Synthesis at scale: the teacher's k samples per prompt from verl 0.9.1's generation server
(``verl/trainer/main_generation_server.py``: standalone vLLM / SGLang rollout replicas behind
an OpenAI chat-completions endpoint), read back through the same verification, dedupe, cap,
store and MLflow run as the local path (``core.synth``).

What verl's script does, and so what it needs: it is a Hydra app on the ``ppo_trainer``
config; it reads the parquet files in ``data.train_files`` and the chat messages in column
``data.prompt_key``; starts ``trainer.n_gpus_per_node * trainer.nnodes /
actor_rollout_ref.rollout.tensor_model_parallel_size`` replicas of
``actor_rollout_ref.rollout.name`` serving ``actor_rollout_ref.model.path``; sends each prompt
``actor_rollout_ref.rollout.n`` times with ``temperature``, ``top_p`` and ``max_tokens =
actor_rollout_ref.rollout.response_length`` (top-k is not sent; temperature 0 requires n = 1);
and writes the input table plus a ``responses`` column (a list of n strings per row) to
``data.output_path``, a key that ``ppo_trainer`` lacks (hence ``+data.output_path``). The chat
template is applied by the server. It joins the Ray cluster in ``$RAY_ADDRESS`` (or starts one).
It keeps only each completion's text, not its finish reason, so truncated responses cannot be
told apart here: the verifier alone decides.

The exact steps a user runs (the teacher, k, cap, ... come from ``data.sft_source``)::

    # 1. write the candidate prompts (train split, eval prompts removed) and print the command
    python -m core.synth grid=guru data.path=/data/guru data.d_sft=16000 \\
        'data.sft_source={teacher: r1-7b, k: 8, cap: 2, temperature: 0.6, top_p: 0.95}' \\
        ladder=r1_distill model=r1-7b scale=r1 --verl-command --workdir /shared/synth_work
    # 2. run it on the GPU cluster (what step 1 printed), e.g.
    python -m verl.trainer.main_generation_server \\
        data.train_files=/shared/synth_work/prompts.parquet data.prompt_key=prompt \\
        +data.output_path=/shared/synth_work/generations.parquet \\
        data.max_prompt_length=4096 data.max_response_length=16384 \\
        actor_rollout_ref.model.path=deepseek-ai/DeepSeek-R1-Distill-Qwen-7B \\
        actor_rollout_ref.rollout.name=vllm actor_rollout_ref.rollout.n=8 \\
        actor_rollout_ref.rollout.temperature=0.6 actor_rollout_ref.rollout.top_p=0.95 \\
        actor_rollout_ref.rollout.response_length=16384 \\
        actor_rollout_ref.rollout.tensor_model_parallel_size=2 \\
        trainer.n_gpus_per_node=8 trainer.nnodes=1
    # 3. verify, dedupe, cap, store under <cache_dir>/synth/<key> and log the MLflow run
    python -m core.synth <the same overrides> --ingest /shared/synth_work/generations.parquet

After step 3 every trial with the same ``data.sft_source`` finds the set cached.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

from core.config import Config
from core.hydra_utils import flatten_keys, hydra_value


def _teacher_size(cfg: Config):
    teacher = cfg.data.sft_source.teacher
    return cfg.ladder.sizes.get(teacher, cfg.size)


def generation_overrides(cfg: Config, workdir: Path) -> list[str]:
    """Hydra overrides of verl's ``ppo_trainer`` config for ``main_generation_server``."""
    from core import synth
    src, workdir = cfg.data.sft_source, Path(workdir).resolve()
    size = _teacher_size(cfg)
    verl_keys = {**flatten_keys(cfg.verl), **flatten_keys(size.verl)}
    tp = verl_keys.get("actor_rollout_ref.rollout.tensor_model_parallel_size", 1)
    ov = {"data.train_files": str(workdir / "prompts.parquet"), "data.prompt_key": "prompt",
          "+data.output_path": str(workdir / "generations.parquet"),
          "data.max_prompt_length": cfg.rl.max_prompt_tokens,
          "data.max_response_length": synth.max_new_tokens(cfg),
          "actor_rollout_ref.model.path": synth.teacher_source(cfg),
          "actor_rollout_ref.rollout.name": cfg.rl.engine,
          "actor_rollout_ref.rollout.n": src.k,
          "actor_rollout_ref.rollout.temperature": src.temperature,
          "actor_rollout_ref.rollout.top_p": src.top_p,
          "actor_rollout_ref.rollout.response_length": synth.max_new_tokens(cfg),
          "actor_rollout_ref.rollout.tensor_model_parallel_size": tp,
          "trainer.n_gpus_per_node": max(1, size.resources.gpus),
          "trainer.nnodes": size.resources.nodes}
    return [f"{k}={hydra_value(v)}" for k, v in ov.items()]


def generation_command(cfg: Config, workdir: Path) -> list[str]:
    """The argv of verl's generation server for this synthesis (see the module docstring)."""
    return [sys.executable, "-m", "verl.trainer.main_generation_server",
            *generation_overrides(cfg, workdir)]


def write_prompts(cfg: Config, data, workdir: Path) -> Path:
    """The candidate prompts as the parquet verl reads (``prompt`` = chat messages; the other
    record fields ride along as JSON and come back in the output); returns its path."""
    import pandas as pd
    from core import synth
    pool, dropped = synth.candidates(cfg, data)
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    frame = pd.DataFrame({"prompt": [r["prompt"] for r in pool],
                          "record": [json.dumps(r, default=str) for r in pool]})
    frame.to_parquet(workdir / "prompts.parquet")
    (workdir / "candidates.json").write_text(json.dumps({"key": synth.key(cfg), "dropped": dropped}))
    return workdir / "prompts.parquet"


def ingest(cfg: Config, data, generations: Path, log=print) -> Path:
    """Verify, dedupe, cap and store the server's output as the synthesised set of ``cfg``."""
    import pandas as pd
    from core import synth
    frame = pd.read_parquet(generations)
    pool = [json.loads(r) for r in frame["record"]]
    texts = [[str(t) for t in row] for row in frame["responses"]]
    k = cfg.data.sft_source.k
    if any(len(t) != k for t in texts):
        raise ValueError(f"{generations}: expected {k} responses per prompt (data.sft_source.k)")
    side = Path(generations).with_name("candidates.json")
    dropped = json.loads(side.read_text())["dropped"] if side.exists() else 0

    def sampler(c, records):
        if [synth.prompt_of(r) for r in records] != [synth.prompt_of(r) for r in pool]:
            raise ValueError(f"{generations} was generated for other prompts than this config selects")
        return texts, [[True] * k for _ in texts], rollout_flops(c, pool, texts)

    out = synth.folder(cfg)
    if (out / "meta.json").exists():
        log(f"[synth] {out} exists already; nothing ingested")
        return out
    synth.synthesize(cfg, data, log, sampler=sampler)
    if dropped:
        log(f"[synth] {dropped} candidate prompt(s) were dropped for being in the eval selection")
    return out


def rollout_flops(cfg: Config, records: list[dict], texts: list[list[str]]) -> float:
    """Forward FLOPs of every sampled sequence (prompt + response tokens), from the teacher's
    config and tokenizer (no weights loaded)."""
    from transformers import AutoConfig, AutoTokenizer
    from core import synth
    from core.flops import FlopModel
    from core.models import render_prompt
    source = synth.teacher_source(cfg)
    tok = AutoTokenizer.from_pretrained(source)
    flop_model = FlopModel.from_config(AutoConfig.from_pretrained(source))
    lens = []
    for rec, samples in zip(records, texts):
        p = len(tok(render_prompt(tok, rec["prompt"]), add_special_tokens=False)["input_ids"])
        lens += [p + len(tok(t, add_special_tokens=False)["input_ids"]) + 1 for t in samples]
    return flop_model.forward(lens)


def dry_run(cfg: Config, overrides: str = "<the grid's overrides>") -> str:
    """The synthesis as ``python -m core.tune ... --dry-run`` prints it before the SFT stage:
    the three steps above with this config's generation-server command (or where the cached
    set already is)."""
    import shlex

    from core import synth
    if synth.is_cached(cfg):
        return f"# D_SFT: synthesised examples cached in {synth.folder(cfg)}"
    src, work = cfg.data.sft_source, synth.folder(cfg).with_name(synth.folder(cfg).name + "-work")
    cmd = generation_command(cfg, work)
    head = " ".join(map(shlex.quote, cmd[:3]))
    return "\n".join([
        f"# D_SFT synthesis (data.sft_source): teacher {src.teacher}, k={src.k}, cap={src.cap}, "
        f"{synth.n_prompts(cfg)} train prompts (eval prompts removed), cached in {synth.folder(cfg)}",
        f"#   1. python -m core.synth {overrides} --verl-command --workdir {work}   (writes the prompts)",
        "#   2. on the GPU cluster, verl's generation server:",
        " \\\n    ".join([head, *(shlex.quote(c) for c in cmd[3:])]),
        f"#   3. python -m core.synth {overrides} --ingest {work}/generations.parquet   "
        "(verify, dedupe, cap, cache, MLflow)"])
