"""Records for a trial: the dataset plugin called with the config's selection, and a content
fingerprint of what was selected.

``select(cfg, "train" | "eval" | "sft")`` is the one place that calls a dataset factory, so
the RL pool (D_RL), the eval prompts, the SFT examples (D_SFT, drawn from the train split with
a different seed) and the grid's fingerprint tag see the same options. A selection the data
cannot satisfy is a ``ConfigError`` naming the key.
"""
from __future__ import annotations

import hashlib
import json
from operator import attrgetter

from core import schema
from core.config import Config, data_options, domains_for
from core.errors import ConfigError, UserError

_ROLES = {"train": ("train", "data.d_rl", 0), "eval": ("eval", "data.n_eval", 0),
          "sft": ("train", "data.d_sft", 10_000),
          # prompts a teacher answers when SFT examples are synthesised (data.sft_source)
          "sft_candidates": ("train", "data.sft_source.prompts", 10_000),
          # prompts whose policy samples become RM preference pairs (train / held-out)
          "rm_train": ("train", "reward.rm.d_rm", 20_000), "rm_eval": ("eval", "reward.rm.n_eval_pairs", 20_000)}


def select(cfg: Config, role: str, registry=None, n: int | None = None) -> list[dict]:
    """Records for ``role`` (train, eval, sft, rm_train, rm_eval); ``n`` overrides the count."""
    from core.plugins import registry as default_registry
    split, key, seed_offset = _ROLES[role]
    spec = (registry or default_registry()).get("datasets", cfg.data.dataset)
    if n is None:
        n = attrgetter(key)(cfg)
    if role == "sft" and cfg.data.sft_source is not None:      # synthesised worked examples
        return _synthesised(cfg, n, registry)
    try:
        domains = domains_for(cfg, {"sft_candidates": "sft"}.get(role, role))
        return spec.factory(split=split, n=n, domains=domains,
                            difficulties=cfg.data.difficulties, seed=cfg.data.seed + seed_offset,
                            **data_options(cfg))
    except UserError:           # a complete message already (bad file, row, path)
        raise
    except ValueError as exc:   # the plugin's own message names the count it cannot supply
        raise ConfigError(key, n, f"dataset {cfg.data.dataset!r} cannot supply it: {exc}") from exc


def _synthesised(cfg: Config, n: int, registry=None) -> list[dict]:
    """``n`` SFT examples rejection-sampled from ``data.sft_source.teacher`` (``core.synth``;
    built on first use, then cached)."""
    from core import synth
    hooks = synth.Data(select=lambda c, role, n=None: select(c, role, registry, n=n),
                       fingerprint=fingerprint)
    try:
        return synth.serve(cfg, hooks, n)
    except UserError:
        raise
    except ValueError as exc:
        raise ConfigError("data.d_sft", n, str(exc)) from exc


def fingerprint(records: list[dict]) -> str:
    """A hash of exactly which prompts and answers were selected, in order."""
    h = hashlib.sha256()
    for r in records:
        h.update(json.dumps([r["data_source"], r["prompt"], r["reward_model"]["ground_truth"]],
                            sort_keys=True, default=str).encode())
    return h.hexdigest()[:16]


_fingerprints: dict[str, str] = {}


def selection_fingerprint(cfg: Config) -> str:
    """Fingerprint of the RL pool and the eval prompts together (the grid logs it as a tag).
    Memoised per data config: the driver checks every selection before Ray starts and tags
    every trial's run later, and both ask for the same selections."""
    key = json.dumps(schema.to_dict(cfg.data), sort_keys=True, default=str)
    if key not in _fingerprints:
        _fingerprints[key] = fingerprint(select(cfg, "train") + select(cfg, "eval"))
    return _fingerprints[key]


def summary(trials) -> str:
    """What the grid's trials would train and evaluate on, one block per distinct selection:
    counts per split by (domain, level) and the content fingerprint (``--cfg`` prints it).
    Bad data is an error here too; a hub dataset that cannot be reached is said so."""
    from collections import Counter
    lines, seen = [], set()
    for _, t in trials:
        key = json.dumps(schema.to_dict(t.data), sort_keys=True, default=str)
        if key in seen:
            continue
        seen.add(key)
        try:
            own_sft = t.data.d_sft and t.data.sft_source is None   # synthesised: not run for --cfg
            parts = {role: select(t, role) for role in ("train", "eval") + (("sft",) if own_sft else ())}
        except UserError:
            raise
        except Exception as exc:          # e.g. a hub id with no network here
            lines.append(f"# data {t.data.dataset} {t.data.path or ''}: not loaded here "
                         f"({type(exc).__name__}: {str(exc)[:120]})")
            continue
        lines.append(f"# data {t.data.dataset}{' ' + t.data.path if t.data.path else ''}: "
                     f"fingerprint {selection_fingerprint(t)}")
        for role, recs in parts.items():
            cells = Counter((r["extra_info"].get("domain") or r["ability"], r["extra_info"].get("difficulty", 0))
                            for r in recs)
            cell_txt = ", ".join(f"{d}/L{lv}: {n}" for (d, lv), n in sorted(cells.items()))
            lines.append(f"#   {role}: {len(recs)} records ({cell_txt})")
        if t.data.d_sft and t.data.sft_source is not None:
            from core import synth
            lines.append(synth.describe(t))
    return "\n".join(lines)
