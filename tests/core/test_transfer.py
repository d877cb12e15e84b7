"""Domain transfer (issue 17): the ``transfer`` report section on synthetic metric histories,
the eval/SFT domain options, and the grid composing on the CPU and at real scale."""
import json
import zlib

import numpy as np
import pytest

import core.report.transfer as transfer_mod

from core.report import build, grid_view
from core.report.transfer import analyse, joined

DOMAINS = ("arith", "mul", "rev")
SIZES = {"xs": 145408, "s": 752128}
# the gain each source gives each target (per D_RL rung it scales as 1 - exp(-D / 200))
TRUE = {("arith", "arith"): 0.30, ("arith", "mul"): 0.15, ("mul", "mul"): 0.3,
        ("mul", "arith"): 0.1, ("rev", "rev"): 0.25}


def transfer_run(size: str, source: str, d_rl: int, seed: int = 0, n_per: int = 40) -> dict:
    rng = np.random.default_rng(zlib.crc32(f"{size} {source} {d_rl} {seed}".encode()))
    scale = (1.0 if size == "s" else 0.6) * (1 - np.exp(-d_rl / 200))
    base = {t: rng.uniform(0.1, 0.5, n_per) for t in DOMAINS}
    evals, metrics = {}, {f"val/{t}/pass_at_1": {} for t in DOMAINS}
    metrics["val/pass_at_1"] = {}
    metrics["val/level_2/pass_at_1"] = {0: 0.2, 10: 0.25, 20: 0.3}     # per level: not a domain
    for step in (0, 10, 20):
        per = []
        for t in DOMAINS:
            shift = TRUE.get((source, t), 0.0) * scale * step / 20
            v = np.clip(base[t] + shift + 0.03 * rng.standard_normal(n_per), 0, 1)
            per.append(v)
            metrics[f"val/{t}/pass_at_1"][step] = float(v.mean())
        evals[step] = list(np.concatenate(per))
        metrics["val/pass_at_1"][step] = float(np.mean(evals[step]))
    values = {"model": size, "data.domains": [source], "data.d_rl": d_rl, "seed": seed}
    tags = {"axis.seed": str(seed), "axis.model": size, "axis.data.domains": str([source]), "axis.data.d_rl": str(d_rl),
            "model_size": size, "params_count": str(SIZES[size]), "mlflow.runName": str(values)}
    params = {"seed": str(seed), "data.domains": json.dumps([source]), "data.d_rl": str(d_rl),
              "grid.report": json.dumps(["transfer"])}
    return {"id": f"{values}", "name": str(values), "status": "FINISHED", "tags": tags,
            "params": params, "metrics": metrics, "evals": evals,
            "eval_domains": [t for t in DOMAINS for _ in range(n_per)]}


@pytest.fixture(autouse=True)
def fewer_draws(monkeypatch):
    monkeypatch.setattr(transfer_mod, "N_BOOT", 40)      # fewer bootstrap draws, for speed
    monkeypatch.setattr(transfer_mod, "GAIN_BOOT", 400)


SOURCES = ("arith", "rev")


@pytest.fixture(scope="module")
def grid():
    d_rls = [16, 64, 256, 1024]
    runs = [transfer_run(z, s, d, seed) for z in SIZES for s in SOURCES for d in d_rls
            for seed in (0, 1)]
    axes = {"model": list(SIZES), "data.domains": [[s] for s in SOURCES], "data.d_rl": d_rls,
            "seed": [0, 1]}
    return {"id": "p", "tags": {"grid": "domain_transfer", "axes": json.dumps(axes)}}, runs


@pytest.fixture(scope="module")
def report(grid, tmp_path_factory):
    """The whole report (this section only) built once: analysis, figures, tables, metrics."""
    out = tmp_path_factory.mktemp("transfer")
    saved = transfer_mod.N_BOOT, transfer_mod.GAIN_BOOT
    transfer_mod.N_BOOT, transfer_mod.GAIN_BOOT = 40, 400
    try:
        return build(*grid, out, log=lambda _: None), out
    finally:
        transfer_mod.N_BOOT, transfer_mod.GAIN_BOOT = saved


def test_transfer_matrix_gains_intervals_and_minimal_d_rl(report):
    res = report[0].results["transfer"]
    assert res.settings == ["model=xs", "model=s"] and res.sources == list(SOURCES)
    assert res.targets == sorted(DOMAINS) and res.d_rls == [16, 64, 256, 1024]
    big = res.cell("model=s", "arith", 1024, "mul")           # a real transfer: interval > 0
    assert big.gain is not None and big.gain.low > 0 and abs(big.estimate - 0.15) < 0.05
    none = res.cell("model=s", "rev", 1024, "arith")          # no transfer: inside the noise
    assert none.gain.inside_noise and "*" not in none.text()
    curve = next(c for c in res.curves if (c.setting, c.source, c.target) == ("model=s", "arith", "mul"))
    assert curve.minimal_d is not None and curve.minimal.endswith(f"{curve.minimal_d:g}]")
    flat = next(c for c in res.curves if (c.setting, c.source, c.target) == ("model=s", "rev", "mul"))
    assert flat.minimal.startswith("not reached")
    assert "larger with less D_RL" in res.size_note


def test_transfer_fit_rules_and_outputs(report):
    report, tmp_path = report
    res = report.results["transfer"]
    strong = next(c for c in res.curves if (c.setting, c.source, c.target) == ("model=s", "arith", "arith"))
    assert strong.fit.identified, strong.fit.reasons        # 4 rungs: A and tau identified
    for c in res.curves:                                     # a non-result says why
        assert c.fit.identified or c.fit.reasons
    md = report.tables["transfer"]
    assert "-> mul" in md and "| model=s | 1024 | arith |" in md
    assert "minimal D_RL" in report.tables["transfer_data"]
    assert (tmp_path / "transfer_matrix.png").exists() and (tmp_path / "transfer_vs_d_rl.png").exists()
    assert any(k.endswith("/min_d_rl") for k in report.metrics)


def test_two_rungs_are_data_only_and_no_intervals_without_domains(grid):
    parent, runs = grid
    two = [r for r in runs if r["params"]["data.d_rl"] in ("16", "1024") and r["tags"]["model_size"] == "s"]
    res = analyse(two, grid_view(parent, two))
    assert not any(c.fit.identified for c in res.curves)
    assert all(c.fit.reasons for c in res.curves)
    old = [{**r, "eval_domains": None} for r in two]       # trials from before domains were logged
    res = analyse(old, grid_view(parent, old))
    assert res.targets == sorted(DOMAINS)                   # from val/<domain>/pass_at_1
    cell = res.cell("model=s", "arith", 1024, "mul")
    assert cell.gain is None and np.isfinite(cell.estimate) and "no interval" in cell.text()
    running = {**two[0], "metrics": {k: {0: v[0]} for k, v in two[0]["metrics"].items()}}
    res = analyse([running], grid_view(parent, [running]))
    assert not res                                          # one eval so far: no gain yet


def test_source_labels():
    assert joined('["arith", "mul"]') == "arith+mul" and joined("['rev']") == "rev"
    assert joined("arith") == "arith"


def test_domain_transfer_grid_composes_with_eval_and_sft_domains():
    from core import data
    from core.config import domains_for, expand, load
    cfg = load("domain_transfer")
    trials = expand(cfg)
    assert len(trials) == 12 and cfg.grid.report[-1] == "transfer"
    _, t = trials[0]
    assert domains_for(t, "eval") == ("arith", "mul", "rev", "rot") and t.data.domains == ("arith",)
    evals = data.select(t, "eval")
    assert {r["extra_info"]["domain"] for r in evals} == {"arith", "mul", "rev", "rot"}
    assert {r["extra_info"]["domain"] for r in data.select(t, "train")} == {"arith"}
    from core.backends.sft import base_key
    keys = {base_key(c) for v, c in trials if v["model"] == "s"}
    assert len(keys) == 1                                    # one SFT base per size


def test_bad_eval_domains_are_config_errors():
    from core.config import load
    from core.errors import ConfigError
    with pytest.raises(ConfigError, match="data.eval_domains.1"):
        load("domain_transfer", ["data.eval_domains=[arith,nope]"])
    with pytest.raises(ConfigError, match="non-empty list without repeats"):
        load("domain_transfer", ["data.sft_domains=[arith,arith]"])


def test_domain_transfer_at_real_scale_composes():
    from core.config import domains_for, expand, load
    cfg = load("domain_transfer", ["scale=r1"])
    assert cfg.backend == "verl" and cfg.data.dataset == "guru"
    trials = expand(cfg)
    assert len(trials) == 2 * 4 * 3
    assert domains_for(trials[0][1], "eval") == ("math", "codegen", "logic", "simulation", "table", "stem")


def test_sft_rl_ratio_at_real_scale_prints_synthesis_sft_and_rl(tmp_path):
    """Guru has no worked examples: at scale=r1 the grid synthesises D_SFT from QwQ-32B, and
    the dry run prints the generation server, verl's SFT trainer and main_ppo, in that order."""
    from core.backends.verl import dry_run
    from core.config import expand, load
    cfg = load("sft_rl_ratio", ["scale=r1", f"cache_dir={tmp_path}", f"output_dir={tmp_path}"])
    assert cfg.data.sft_source.teacher == "qwq-32b" and cfg.data.dataset == "guru"
    text = dry_run(cfg, expand(cfg))
    gen, sft = text.index("verl.trainer.main_generation_server"), text.index("verl.trainer.sft_trainer_ray")
    assert gen < sft < text.index("verl.trainer.main_ppo")
    assert "actor_rollout_ref.model.path=Qwen/QwQ-32B" in text and "--ingest" in text
    assert text.count("main_generation_server") == 1          # one synthesis shared by the sweep


def test_mixed_domain_variant_composes():
    """Two sources with the domain_schedule curriculum (the command in the grid's comment)."""
    from core.config import expand, load
    from core.layout import trial_key
    cfg = load("domain_transfer", ["grid.axes.data.domains=[[arith,mul]]", "curriculum.name=domain_schedule",
                                   "+curriculum.options.schedule=[[0, {arith: 1.0}], [10, {mul: 1.0}]]"])
    values, t = expand(cfg)[0]
    assert t.data.domains == ("arith", "mul") and t.curriculum.name == "domain_schedule"
    assert trial_key(values).startswith("data-domains=arith+mul_")


def _fit_teacher(folder, out, steps: int = 300):
    """A tiny teacher that knows the fixture's math answers: xs fitted to ``\\boxed{answer}`` on
    30 math train prompts (the char-level ladder answers none of them untrained); its folder."""
    import torch

    from core import data, models
    from core.backends.sft import sft_batch
    from core.config import load
    cfg = load("guru", [f"data.path={folder}", "data.domains=[math]", "model=xs", "~grid.axes.model"])
    records = data.select(cfg, "train", n=30)
    for r in records:
        r["extra_info"]["sft_response"] = "\\boxed{" + r["reward_model"]["ground_truth"] + "}"
    torch.manual_seed(0)
    model, tok = models.load(models.model_source(cfg.size, cfg.cache_dir))
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    model.train()
    for step in range(steps):
        ids, mask, labels = sft_batch(tok, [records[(step * 10 + j) % len(records)] for j in range(10)])
        loss = model(input_ids=ids, attention_mask=mask, labels=labels,
                     position_ids=(mask.cumsum(1) - 1).clamp(min=0), use_cache=False).loss
        loss.backward()
        opt.step(), opt.zero_grad()
    model.save_pretrained(out)
    tok.save_pretrained(out)
    return str(out)


def test_sft_rl_ratio_runs_on_guru_data_with_synthesised_sft(tmp_path):
    """Issue 17's local smoke: ``grid=sft_rl_ratio`` on Guru-shaped data, D_SFT rejection-sampled
    from a teacher by Guru's own math verifier (never an eval prompt), then SFT and GRPO per trial."""
    from mlflow.tracking import MlflowClient

    from core import data, synth
    from core.config import expand, load
    from core.trial import run_trial
    from plugins.datasets import _guru_sample
    folder = _guru_sample.write(tmp_path / "guru", n_train=60, n_eval=8)
    teacher = _fit_teacher(folder, tmp_path / "teacher")
    db = tmp_path / "mlflow.db"
    cfg = load("sft_rl_ratio", [
        "data.dataset=guru", f"data.path={folder}", "data.domains=[math]", "reward.name=guru",
        "data.difficulties=[1,2,3,4]", "model=xs", "grid.axes.data.d_sft=[2,4]", "grid.axes.data.d_rl=[8]",
        f"data.sft_source={{teacher: '{teacher}', k: 4, cap: 1, prompts: 30}}", "data.n_eval=8",
        "sft.steps=4", "sft.batch_size=4", "rl.steps=1", "rl.prompts_per_step=2", "rl.group_size=2",
        "eval.every=1", "eval.n_samples=2", "eval.k_max=2", "rl.max_new_tokens=16",
        f"cache_dir={tmp_path}/cache", f"tracking.tracking_uri=sqlite:///{db}"])
    trials = expand(cfg)
    assert [t.data.d_sft for _, t in trials] == [2, 4]
    sft = data.select(trials[1][1], "sft")
    assert len(sft) == 4 and all(r["extra_info"]["sft_response"] for r in sft)
    evals = {json.dumps(r["prompt"]) for r in data.select(trials[1][1], "eval")}
    assert not evals & {json.dumps(r["prompt"]) for r in sft}         # never an eval prompt
    client = MlflowClient(f"sqlite:///{db}")
    (run,) = client.search_runs([client.get_experiment_by_name(synth.EXPERIMENT).experiment_id])
    assert 0 < run.data.metrics["synth/math/acceptance_rate"] <= 1 and run.data.params["teacher"] == teacher
    for _, t in trials:
        steps = [m for m, _ in run_trial(t, tmp_path / f"t{t.data.d_sft}", log=lambda *_: None)]
        assert [m["step"] for m in steps] == [0, 1]
        assert steps[0]["compute/flops_sft"] > 0 and "val/math/pass_at_1" in steps[-1]
