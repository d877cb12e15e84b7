"""SFT data synthesised by rejection sampling, for datasets without worked examples (Guru).

With ``data.sft_source: {teacher: ..., k: 8, cap: 2, temperature: 1.0}`` set,
``core.data.select(cfg, "sft")`` serves ``data.d_sft`` examples from a synthesised set:

1. **candidates**: ``sft_source.prompts`` (default ``data.d_sft``) prompts of the dataset's
   *train* split, drawn exactly as the dataset's own SFT examples would be (role ``sft``'s
   seed); any whose prompt text is in the eval selection is dropped (counted), and the stored
   set is checked to hold none;
2. **sampling**: ``k`` responses per prompt from the teacher (a ladder size, a checkpoint
   folder such as a finished trial's policy, or a hub id; all load through
   ``core.models.load``) at the given temperature / top-p, ``core.backends.rollout.sample``;
   responses that hit the token budget without ``<eos>`` are rejected (truncated);
3. **verification**: the dataset's rule reward (``reward.name``, or ``reward.rm.gold`` under
   a learned RM) through ``core.scoring.score``; a response is kept when ``acc >= 0.5``;
4. **dedupe and cap**: distinct responses (after stripping whitespace) in sample order, at
   most ``cap`` per prompt; each becomes a copy of its record with
   ``extra_info.sft_response`` set to the response;
5. **store**: ``<cache_dir>/synth/<key>/records.jsonl`` and ``meta.json`` (teacher, settings,
   acceptance per domain, FLOPs, fingerprints, MLflow run id). ``<key>`` hashes the teacher's
   identity, k, cap, sampling settings, verifier, the data selection and its seed; a file
   lock makes a second caller wait and then reuse the set;
6. **tracking**: one MLflow run per synthesis in experiment ``synth`` (params: the settings;
   metrics ``synth/acceptance_rate``, ``synth/<domain>/acceptance_rate``, ``synth/examples``,
   ``synth/flops_rollout`` (forward FLOPs of all k samples, ``core.flops``), ...; tags: the
   key, the teacher, ``dataset_fingerprint`` of the stored set (``core.data.fingerprint``)).

Serving draws the first ``d_sft`` examples of a seeded shuffle of the set (so a smaller D_SFT
is a subset of a larger one), after dropping any prompt of the current eval selection; a set
smaller than ``d_sft`` is an error naming ``data.d_sft``.

At scale the sampling runs on verl's generation server (vLLM): ``core.synth.verl`` builds the
command and reads its output back through the same verification, dedupe, cap and store.

This package never imports ``core.data`` or ``core.tracking`` (``core.data`` imports it, and an
import cycle is an error): ``core.data`` hands in its ``select`` and ``fingerprint``.
"""
from __future__ import annotations

import fcntl
import hashlib
import json
import os
import time
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from core import schema
from core.config import CONFIG_DIR, Config, domains_for

EXPERIMENT = "synth"
VERSION = 1          # bump when selection, verification or the stored layout changes


@dataclass(frozen=True)
class Data:
    """What ``core.data`` hands in: its ``select(cfg, role, n=)`` and ``fingerprint``."""
    select: Callable[..., list[dict]]
    fingerprint: Callable[[list[dict]], str]


# --- identity and cache -----------------------------------------------------------------------
def teacher_source(cfg: Config) -> str:
    """Where the teacher loads from: a ladder size's folder or hub id, else the value itself."""
    from core.models import model_source
    teacher = cfg.data.sft_source.teacher
    if teacher in cfg.ladder.sizes:
        return model_source(cfg.ladder.sizes[teacher], Path(cfg.cache_dir).resolve(), seed=cfg.data.seed)
    return teacher


def teacher_identity(cfg: Config) -> dict:
    """A ladder size by its architecture or path (and the init seed); a folder by its path and
    its files' sizes and times (a retrained checkpoint is a new teacher); a hub id as is."""
    teacher = cfg.data.sft_source.teacher
    if teacher in cfg.ladder.sizes:
        size = cfg.ladder.sizes[teacher]
        return {"size": teacher, "path": size.path, "arch": schema.to_dict(size.arch),
                "seed": cfg.data.seed}
    folder = Path(teacher).expanduser()
    if folder.is_dir():
        files = sorted((p.name, p.stat().st_size, p.stat().st_mtime_ns)
                       for p in folder.iterdir() if p.is_file())
        return {"folder": str(folder.resolve()), "files": hashlib.sha256(
            json.dumps(files).encode()).hexdigest()[:16]}
    return {"hub": teacher}


def verifier_name(cfg: Config) -> str:
    """The rule reward that accepts a response (the gold rule under a learned RM)."""
    return cfg.reward.rm.gold if cfg.reward.name == "learned_rm" else cfg.reward.name


def n_prompts(cfg: Config) -> int:
    return cfg.data.sft_source.prompts or cfg.data.d_sft


def max_new_tokens(cfg: Config) -> int:
    return cfg.data.sft_source.max_new_tokens or cfg.rl.max_new_tokens


def settings(cfg: Config) -> dict:
    """Everything the synthesised set depends on (hashed into its key)."""
    src, d = cfg.data.sft_source, cfg.data
    return {"teacher": teacher_identity(cfg), "k": src.k, "cap": src.cap,
            "temperature": src.temperature, "top_p": src.top_p, "max_new_tokens": max_new_tokens(cfg),
            "verifier": verifier_name(cfg), "verifier_options": cfg.reward.options,
            "selection": {"dataset": d.dataset, "domains": list(domains_for(cfg, "sft")),
                          "difficulties": list(d.difficulties), "path": d.path,
                          "sources": list(d.sources), "skip_bad_rows": d.skip_bad_rows,
                          "prompts": n_prompts(cfg)},
            "seed": d.seed, "v": VERSION}


def key(cfg: Config) -> str:
    return hashlib.sha256(json.dumps(settings(cfg), sort_keys=True, default=str).encode()).hexdigest()[:16]


def folder(cfg: Config) -> Path:
    return Path(cfg.cache_dir).resolve() / "synth" / key(cfg)


def is_cached(cfg: Config) -> bool:
    return (folder(cfg) / "meta.json").exists()


def describe(cfg: Config) -> str:
    """One line for ``--cfg``: where the synthesised set is and whether it exists yet."""
    src = cfg.data.sft_source
    where = folder(cfg)
    state = (f"cached, {json.loads((where / 'meta.json').read_text())['examples']} examples"
             if is_cached(cfg) else "not synthesised yet: the first trial (or python -m core.synth) does it")
    return (f"#   sft: {cfg.data.d_sft} examples synthesised from teacher {src.teacher!r} "
            f"(k={src.k}, cap={src.cap}, T={src.temperature}) at {where} ({state})")


# --- building the set --------------------------------------------------------------------------
def candidates(cfg: Config, data: Data) -> tuple[list[dict], int]:
    """Train prompts to sample, without any prompt of the eval selection (and how many were
    dropped for being there)."""
    pool = data.select(cfg, "sft_candidates", n=n_prompts(cfg))
    held_out = eval_prompts(cfg, data)
    kept = [r for r in pool if prompt_of(r) not in held_out]
    return kept, len(pool) - len(kept)


def prompt_of(record: dict) -> str:
    return json.dumps(record["prompt"], sort_keys=True)


def eval_prompts(cfg: Config, data: Data) -> set[str]:
    return {prompt_of(r) for r in data.select(cfg, "eval")}


def accept(cfg: Config, records: list[dict], texts: list[list[str]],
           finished: list[list[bool]]) -> tuple[list[dict], dict]:
    """Verify, dedupe and cap ``texts[i]`` (the samples of ``records[i]``); the kept examples
    and the counts behind the acceptance rates."""
    from core.plugins import registry
    from core.scoring import score
    k = cfg.data.sft_source.k
    reward = registry().get("rewards", verifier_name(cfg)).factory(**cfg.reward.options)
    flat = [t for ts in texts for t in ts]
    _, acc = score(reward, records, flat, k)
    if hasattr(reward, "close"):
        reward.close()
    out, stats = [], defaultdict(Counter)
    for i, rec in enumerate(records):
        dom, seen = rec["extra_info"].get("domain") or rec.get("ability", "all"), set()
        stats[dom]["prompts"] += 1
        for j, text in enumerate(texts[i]):
            ok = bool(acc[i * k + j]) and finished[i][j]
            stats[dom]["samples"] += 1
            stats[dom]["accepted"] += ok
            stats[dom]["truncated"] += not finished[i][j]
            if not ok:
                continue
            if text.strip() in seen:
                stats[dom]["duplicates"] += 1
                continue
            seen.add(text.strip())
            if len(seen) > cfg.data.sft_source.cap:
                stats[dom]["over_cap"] += 1
                continue
            out.append(_example(rec, text, key(cfg), j))
        stats[dom]["prompts_with_example"] += bool(seen)
    return out, {d: dict(c) for d, c in stats.items()}


def _example(record: dict, text: str, synth_key: str, sample: int) -> dict:
    ex = json.loads(json.dumps(record, default=str))
    ex["extra_info"] = {**ex["extra_info"], "sft_response": text,
                        "synth": {"key": synth_key, "sample": sample}}
    return ex


def sample_local(cfg: Config, records: list[dict], batch_prompts: int = 64,
                 log=print) -> tuple[list[list[str]], list[list[bool]], float]:
    """``k`` samples per record from the teacher on this machine: texts, whether each ended
    with ``<eos>``, and the rollout forward FLOPs of all of them."""
    import torch
    from core import models
    from core.backends.rollout import render, sample
    from core.flops import FlopModel
    src = cfg.data.sft_source
    model, tok = models.load(teacher_source(cfg))
    model.eval()
    flop_model, flops = FlopModel.from_config(model.config), 0.0
    torch.manual_seed(cfg.data.seed)
    texts, finished, t0 = [], [], time.time()
    for i in range(0, len(records), batch_prompts):
        batch = records[i:i + batch_prompts]
        ro = sample(model, tok, render(tok, batch), src.k, max_new_tokens(cfg), src.temperature, src.top_p)
        flops += flop_model.forward(ro.padded_seqlens())
        done = (ro.response_ids == tok.eos_token_id).any(dim=1).tolist()
        texts += [ro.texts[j * src.k:(j + 1) * src.k] for j in range(len(batch))]
        finished += [done[j * src.k:(j + 1) * src.k] for j in range(len(batch))]
        log(f"[synth] sampled {min(i + batch_prompts, len(records))}/{len(records)} prompts x {src.k} "
            f"({time.time() - t0:.0f}s)")
    return texts, finished, flops


def store(cfg: Config, data: Data, examples: list[dict], stats: dict, flops: float,
          dropped: int, pool: list[dict], log=print) -> dict:
    """Write the set and its meta, log the run to MLflow; returns the meta."""
    held_out = eval_prompts(cfg, data)
    leaked = [r for r in examples if prompt_of(r) in held_out]
    assert not leaked, f"synthesised SFT data holds {len(leaked)} eval prompt(s)"
    out = folder(cfg)
    tmp = out.with_name(f"{out.name}.tmp{os.getpid()}")
    tmp.mkdir(parents=True, exist_ok=True)
    with open(tmp / "records.jsonl", "w") as f:
        for ex in examples:
            f.write(json.dumps(ex, sort_keys=True, default=str) + "\n")
    meta = {"key": key(cfg), "settings": settings(cfg), "teacher_source": teacher_source(cfg),
            "examples": len(examples), "stats": stats, "flops_rollout": flops,
            "eval_overlap_dropped": dropped, "fingerprint": data.fingerprint(examples),
            "candidates_fingerprint": data.fingerprint(pool), "created": time.time()}
    meta["mlflow_run_id"] = log_run(cfg, meta)
    (tmp / "meta.json").write_text(json.dumps(meta, indent=1, default=str))
    tmp.rename(out)
    log(f"[synth] {len(examples)} examples from {len(pool)} prompts, acceptance "
        f"{acceptance(stats):.3f}, stored in {out}")
    return meta


def acceptance(stats: dict, domain: str | None = None) -> float:
    rows = [stats[domain]] if domain else list(stats.values())
    samples = sum(r.get("samples", 0) for r in rows)
    return sum(r.get("accepted", 0) for r in rows) / samples if samples else 0.0


def synthesize(cfg: Config, data: Data, log=print, sampler=None) -> Path:
    """The synthesised set's folder, built once (a second caller waits for it, then reuses
    it). ``sampler(cfg, records) -> (texts, finished, flops)`` defaults to ``sample_local``."""
    out = folder(cfg)
    out.parent.mkdir(parents=True, exist_ok=True)
    with open(out.with_suffix(".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if (out / "meta.json").exists():
            log(f"[synth] reusing {out}")
            return out
        pool, dropped = candidates(cfg, data)
        texts, finished, flops = (sampler or sample_local)(cfg, pool)
        examples, stats = accept(cfg, pool, texts, finished)
        store(cfg, data, examples, stats, flops, dropped, pool, log)
    return out


def serve(cfg: Config, data: Data, n: int, log=print) -> list[dict]:
    """``n`` synthesised examples (``select(cfg, "sft")`` with ``data.sft_source`` set)."""
    import random
    where = synthesize(cfg, data, log)
    with open(where / "records.jsonl") as f:
        examples = [json.loads(line) for line in f]
    held_out = eval_prompts(cfg, data)            # the eval selection of this config, too
    examples = [r for r in examples if prompt_of(r) not in held_out]
    random.Random(f"{cfg.data.seed}/synth").shuffle(examples)
    if len(examples) < n:
        raise ValueError(f"the synthesised set ({where}) holds {len(examples)} verified examples; "
                         f"raise data.sft_source.prompts (now {n_prompts(cfg)}), k or cap, or use "
                         f"a stronger teacher")
    return examples[:n]


# --- MLflow ------------------------------------------------------------------------------------
def tracking_uri(cfg: Config) -> str:
    """As ``core.tracking.tracking_uri`` (not imported: it imports ``core.data``)."""
    return (cfg.tracking.tracking_uri or os.environ.get("MLFLOW_TRACKING_URI")
            or f"sqlite:///{CONFIG_DIR.parent / 'mlflow.db'}")


def _git_commit() -> str:
    import subprocess
    try:
        return subprocess.run(["git", "rev-parse", "HEAD"], cwd=CONFIG_DIR.parent, text=True,
                              capture_output=True, timeout=5).stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def log_run(cfg: Config, meta: dict) -> str:
    """One run in experiment ``synth``: settings as params, rates and FLOPs as metrics."""
    from mlflow.entities import Metric, Param
    from mlflow.tracking import MlflowClient
    client = MlflowClient(tracking_uri=tracking_uri(cfg))
    exp = client.get_experiment_by_name(EXPERIMENT)
    exp_id = exp.experiment_id if exp else client.create_experiment(
        EXPERIMENT, tags={"mlflow.experimentKind": "custom_model_development"})
    src, stats = cfg.data.sft_source, meta["stats"]
    run = client.create_run(exp_id, tags={
        "mlflow.runName": f"synth {src.teacher} k={src.k} cap={src.cap} {cfg.data.dataset}",
        "synth_key": meta["key"], "teacher": src.teacher, "teacher_source": meta["teacher_source"],
        "dataset": cfg.data.dataset, "dataset_fingerprint": meta["fingerprint"],
        "candidates_fingerprint": meta["candidates_fingerprint"], "cache_folder": str(folder(cfg)),
        "git_commit": _git_commit()})
    params = {"teacher": src.teacher, "k": src.k, "cap": src.cap, "temperature": src.temperature,
              "top_p": src.top_p, "max_new_tokens": max_new_tokens(cfg), "prompts": n_prompts(cfg),
              "verifier": verifier_name(cfg), "dataset": cfg.data.dataset,
              "domains": json.dumps(list(domains_for(cfg, "sft"))),
              "difficulties": json.dumps(list(cfg.data.difficulties)), "seed": cfg.data.seed}
    now, total = int(time.time() * 1000), Counter()
    for row in stats.values():
        total.update(row)
    values = {"synth/acceptance_rate": acceptance(stats), "synth/examples": meta["examples"],
              "synth/flops_rollout": meta["flops_rollout"], "synth/prompts": total["prompts"],
              "synth/samples": total["samples"], "synth/duplicates": total["duplicates"],
              "synth/truncated": total["truncated"], "synth/over_cap": total["over_cap"],
              "synth/prompt_coverage": total["prompts_with_example"] / max(1, total["prompts"]),
              "synth/eval_overlap_dropped": meta["eval_overlap_dropped"]}
    values.update({f"synth/{d}/acceptance_rate": acceptance(stats, d) for d in stats})
    client.log_batch(run.info.run_id, metrics=[Metric(k, float(v), now, 0) for k, v in values.items()],
                     params=[Param(k, str(v)) for k, v in params.items()])
    client.set_terminated(run.info.run_id)
    return run.info.run_id
