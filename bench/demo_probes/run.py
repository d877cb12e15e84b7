"""One probe: SFT base (cached) -> GRPO per seed and an SFT-continuation control per seed,
all measured on the same held-out prompts; appends a JSON line to bench/demo_probes/results.jsonl.

    python bench/demo_probes/run.py '{"name": "...", "size": "s", ...}'   (keys: see DEFAULT)
"""
from __future__ import annotations

import copy
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from lib import *   # noqa
import tasks        # noqa

DEFAULT = {
    "name": "probe",
    "size": "s",
    "init_seed": 0,
    # data: task kinds "arith" (levels) or "digits" (shapes); sft and rl may differ
    "sft_data": {"kind": "arith", "levels": [2, 3], "n": 16000, "seed": 10000},
    "rl_data": {"kind": "arith", "levels": [2, 3], "n": 2048, "seed": 0},
    "eval_data": {"kind": "arith", "levels": [2, 3], "n": 192, "seed": 0},
    "demo": "direct",
    "sft": {"steps": 400, "lr": 2e-3, "bs": 64, "wd": 0.0, "schedule": "cosine", "floor": 0.0,
            "warmup": None, "ls": 0.0},
    "rl": {"steps": 40, "lr": 1e-4, "P": 64, "G": 8, "warmup": 20, "temperature": 1.0,
           "max_new": 12, "kl_coef": None, "ent_coef": 0.0, "freeze": [], "clip": 0.2,
           "norm_mult": 1.0, "betas": [0.9, 0.99], "loss_agg": "token-mean",
           "shared_prefix": False},
    "control": {"lr": None, "schedule": "cosine", "floor": 0.0, "warmup": None, "wd": None, "bs": 64},
    "seeds": [0],
    "eval_n": 16,
    "eval_every": None,
    "train_probe": 0,     # also evaluate the base on this many RL-train prompts (memorisation check)
    "skip_control": False,
    "base_temps": [],     # also report the base's pass@1 at these sampling temperatures
}


def merge(a, b):
    out = copy.deepcopy(a)
    for k, v in b.items():
        out[k] = merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def data(spec, split):
    if spec["kind"] == "arith":
        return tasks.arith(split, spec["n"], spec["levels"], spec["seed"])
    if spec["kind"] == "padded":
        return tasks.arith_padded(split, spec["n"], spec["levels"], spec["seed"], spec.get("width", 2),
                                  spec.get("answer_width", 3))
    if spec["kind"] == "digits":
        return tasks.arith_digits(split, spec["n"], [tuple(s) for s in spec["shapes"]], spec["seed"])
    raise ValueError(spec)


def demo_fn(name):
    parts = name.split(":")
    if parts[0] == "direct":
        return tasks.direct
    if parts[0] == "rev":
        return tasks.rev
    if parts[0] == "mix":
        return tasks.mix(float(parts[1]))
    if parts[0] == "fixednoisy":
        return tasks.fixed_noisy(float(parts[1]))
    if parts[0] == "noisyrev":
        return tasks.noisy_rev(float(parts[1]))
    if parts[0] == "nocarry":
        return tasks.nocarry
    if parts[0] == "mix2":   # mix2:P_REV:OTHER...
        return tasks.mix2(float(parts[1]), demo_fn(":".join(parts[2:])))
    if parts[0] == "noisy":
        base = demo_fn(":".join(parts[2:])) if len(parts) > 2 else tasks.direct
        return tasks.noisy(float(parts[1]), base)
    raise ValueError(name)


def base_model(cfg):
    """The cached SFT base (model folder) and the SFT optimizer-free metadata."""
    ident = {k: cfg[k] for k in ("size", "init_seed", "sft_data", "demo", "sft")}
    ident["v"] = 1
    path = CACHE / f"{cfg['size']}-{key_of(ident)}"
    if not (path / "meta.json").exists():
        t = time.time()
        model, tok = new_model(cfg["size"], cfg["init_seed"])
        s = cfg["sft"]
        sft_train(model, tok, data(cfg["sft_data"], "train"), demo_fn(cfg["demo"]), s["steps"], s["lr"],
                  bs=s["bs"], wd=s["wd"], warmup=s["warmup"], schedule=s["schedule"], floor=s["floor"],
                  label_smoothing=s["ls"], seed=cfg["sft_data"]["seed"], tag=f"sft {cfg['size']}")
        save(model, tok, path, {"ident": ident, "wall_s": time.time() - t})
        log(f"base trained in {time.time() - t:.0f}s -> {path.name}")
    return path


def main(cfg):
    t_all = time.time()
    cfg = merge(DEFAULT, cfg)
    log("config", json.dumps(cfg))
    path = base_model(cfg)
    base_wall = json.loads((path / "meta.json").read_text())["wall_s"]
    ev_recs = data(cfg["eval_data"], "eval")
    rl_recs = data(cfg["rl_data"], "train")
    sft_recs = data(cfg["sft_data"], "train")
    rl = cfg["rl"]
    evf = lambda m: evaluate(m, tok, ev_recs, n=cfg["eval_n"], max_new=rl["max_new"], style_fn=tasks.style_of)
    model, tok = load(path)
    t = time.time()
    torch.manual_seed(12345)
    base_ev = evf(model)
    res = {"name": cfg["name"], "cfg": cfg, "base": summary(base_ev), "base_wall_s": round(base_wall)}
    if cfg["train_probe"]:
        tr = evaluate(model, tok, rl_recs[: cfg["train_probe"]], n=cfg["eval_n"], max_new=rl["max_new"],
                      greedy=False)
        res["base_on_rl_train_p1"] = round(float(tr["p1"].mean()), 4)
    for T in cfg["base_temps"]:
        res[f"base_p1_T{T}"] = round(float(evaluate(model, tok, ev_recs, n=cfg["eval_n"], temperature=T,
                                                    max_new=rl["max_new"], greedy=False)["p1"].mean()), 4)
        log(f"base pass@1 at T={T}: {res[f'base_p1_T{T}']}")
    log("base", res["base"], res.get("base_on_rl_train_p1", ""), f"eval {time.time() - t:.0f}s")
    rl_after, ctrl_after, runs = [], [], []
    for seed in cfg["seeds"]:
        model, tok = load(path)
        t = time.time()
        hist = grpo(model, tok, rl_recs, rl["steps"], rl["lr"], P=rl["P"], G=rl["G"], warmup=rl["warmup"],
                    temperature=rl["temperature"], max_new=rl["max_new"], clip=rl["clip"],
                    kl_coef=rl["kl_coef"], ent_coef=rl["ent_coef"], freeze=tuple(rl["freeze"]), seed=seed,
                    norm_mult=rl["norm_mult"], betas=rl["betas"], loss_agg=rl["loss_agg"], shared_prefix=rl["shared_prefix"],
                    eval_fn=evf, eval_every=cfg["eval_every"], tag=f"rl {cfg['size']} s{seed}")
        rl_wall = time.time() - t
        torch.manual_seed(1000 + seed)
        ev = evf(model)
        rl_after.append(ev["p1"])
        run = {"seed": seed, "rl": summary(ev), "rl_wall_s": round(rl_wall),
               "rl_gain": ci(base_ev["p1"], ev["p1"]), "greedy_gain": ci(base_ev["greedy"], ev["greedy"]),
               "hist": [{k: (round(v, 3) if isinstance(v, float) else v) for k, v in h.items()} for h in hist]}
        log(f"seed {seed} RL", run["rl"], "gain", fmt_ci(run["rl_gain"]), f"({rl_wall:.0f}s)")
        if not cfg["skip_control"]:
            c = cfg["control"]
            s = cfg["sft"]
            model, tok = load(path)
            t = time.time()
            sft_train(model, tok, sft_recs, demo_fn(cfg["demo"]), rl["steps"], c["lr"] or s["lr"], bs=c["bs"],
                      wd=s["wd"] if c["wd"] is None else c["wd"], warmup=c["warmup"], schedule=c["schedule"],
                      floor=c["floor"], label_smoothing=s["ls"], seed=777 + seed, tag=f"ctrl {cfg['size']} s{seed}")
            ctrl_wall = time.time() - t
            torch.manual_seed(1000 + seed)
            cev = evf(model)
            ctrl_after.append(cev["p1"])
            run.update({"ctrl": summary(cev), "ctrl_wall_s": round(ctrl_wall),
                        "ctrl_gain": ci(base_ev["p1"], cev["p1"]), "rl_minus_ctrl": ci(cev["p1"], ev["p1"])})
            log(f"seed {seed} control", run["ctrl"], "gain", fmt_ci(run["ctrl_gain"]),
                "RL-ctrl", fmt_ci(run["rl_minus_ctrl"]), f"({ctrl_wall:.0f}s)")
        runs.append(run)
    res["runs"] = runs
    B = np.stack([base_ev["p1"]] * len(rl_after))
    res["rl_gain"] = ci(B, np.stack(rl_after))
    res["rl_p1"] = round(float(np.mean(rl_after)), 4)
    if ctrl_after:
        res["ctrl_gain"] = ci(B, np.stack(ctrl_after))
        res["rl_minus_ctrl"] = ci(np.stack(ctrl_after), np.stack(rl_after))
        res["ctrl_p1"] = round(float(np.mean(ctrl_after)), 4)
    res["wall_s"] = round(time.time() - t_all)
    log("RESULT", cfg["name"], cfg["size"], "base", res["base"], "RL", res["rl_p1"], fmt_ci(res["rl_gain"]),
        *(["ctrl", res["ctrl_p1"], fmt_ci(res["ctrl_gain"]), "RL-ctrl", fmt_ci(res["rl_minus_ctrl"])]
          if ctrl_after else []), f"wall {res['wall_s']}s")
    record_result(res)
    return res


if __name__ == "__main__":
    main(json.loads(sys.argv[1]))
