"""SFT data synthesised by rejection sampling (core/synth): only verified answers, deduped and
capped, never an eval prompt, cached, logged to MLflow, served by select(cfg, "sft"); and the
at-scale command of verl's generation server composed against verl's installed config."""
import json

import pytest

from core import data, synth
from core.config import load
from core.errors import ConfigError

TEACHER = ["model=xs", "~grid.axes.model", "data.domains=[arith]", "data.difficulties=[1]",
           "data.d_sft=2000", "sft.steps=150", "sft.batch_size=32"]


def _cfg(tmp_path, teacher: str, *extra: str, **source):
    src = ", ".join(f"{k}: {v}" for k, v in {"k": 4, "cap": 2, "prompts": 24, **source}.items())
    return load("smoke", ["model=xs", "~grid.axes.model", "data.domains=[arith]",
                         "data.difficulties=[1]", "data.n_eval=24", "data.d_sft=8",
                         f"data.sft_source={{teacher: '{teacher}', {src}}}",
                         f"cache_dir={tmp_path / 'cache'}",
                         f"tracking.tracking_uri=sqlite:///{tmp_path / 'mlflow.db'}", *extra])


def _hooks():
    return synth.Data(select=lambda c, role, n=None: data.select(c, role, n=n),
                      fingerprint=data.fingerprint)


@pytest.fixture(scope="module")
def teacher(tmp_path_factory):
    """A tiny teacher that answers some single-digit sums: xs after a short SFT."""
    import torch
    from core.backends.sft import warm_start
    torch.set_num_threads(1)
    cache = tmp_path_factory.mktemp("teacher")
    folder, _ = warm_start(load("smoke", TEACHER + [f"cache_dir={cache}"]), log=lambda *_: None)
    return folder


def _runs(tmp_path):
    from mlflow.tracking import MlflowClient
    client = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    return client.search_runs([client.get_experiment_by_name(synth.EXPERIMENT).experiment_id])


def test_accept_keeps_verified_distinct_finished_answers_up_to_the_cap(tmp_path):
    cfg = _cfg(tmp_path, "xs")
    recs = data.select(cfg, "sft_candidates", n=2)
    a, b = (r["reward_model"]["ground_truth"] for r in recs)
    texts = [[f"#{a}", f"#{a} ", "#999", f"x#{a}"],            # dup (after strip), wrong, distinct
             [f"#{b}", f"1#{b}", f"2#{b}", f"#{b}"]]            # third distinct is over the cap
    finished = [[True, True, True, True], [False, True, True, True]]   # truncated first sample
    kept, stats = synth.accept(cfg, recs, texts, finished)
    got = [(r["prompt"][0]["content"], r["extra_info"]["sft_response"]) for r in kept]
    assert got == [(recs[0]["prompt"][0]["content"], f"#{a}"), (recs[0]["prompt"][0]["content"], f"x#{a}"),
                   (recs[1]["prompt"][0]["content"], f"1#{b}"), (recs[1]["prompt"][0]["content"], f"2#{b}")]
    s = stats["arith"]
    assert (s["samples"], s["accepted"], s["duplicates"], s["truncated"]) == (8, 6, 1, 1)
    assert s["over_cap"] == 1 and s["prompts_with_example"] == 2


def test_synthesis_end_to_end_serves_verified_examples_and_caches(tmp_path, teacher):
    cfg = _cfg(tmp_path, teacher)
    served = data.select(cfg, "sft")                      # synthesises on first use
    meta = json.loads((synth.folder(cfg) / "meta.json").read_text())
    from plugins.rewards.synthetic import SyntheticVerifier
    v = SyntheticVerifier()
    assert len(served) == 8 and meta["examples"] >= 8
    for r in served:
        assert v(r["data_source"], r["extra_info"]["sft_response"], r["reward_model"]["ground_truth"]).acc == 1
    held_out = {json.dumps(r["prompt"], sort_keys=True) for r in data.select(cfg, "eval")}
    stored = [json.loads(x) for x in (synth.folder(cfg) / "records.jsonl").read_text().splitlines()]
    assert not {json.dumps(r["prompt"], sort_keys=True) for r in stored} & held_out
    per_prompt = {}
    for r in stored:
        per_prompt.setdefault(r["prompt"][0]["content"], []).append(r["extra_info"]["sft_response"].strip())
    assert all(len(x) <= 2 and len(set(x)) == len(x) for x in per_prompt.values())
    assert meta["flops_rollout"] > 0 and meta["fingerprint"] == data.fingerprint(stored)
    stats = meta["stats"]["arith"]
    assert stats["samples"] == 24 * 4 and 0 < stats["accepted"] <= 96
    runs = _runs(tmp_path)
    assert len(runs) == 1
    run = runs[0].data
    assert run.params["k"] == "4" and run.params["teacher"] == teacher and run.params["cap"] == "2"
    assert run.metrics["synth/acceptance_rate"] == pytest.approx(stats["accepted"] / 96)
    assert run.metrics["synth/arith/acceptance_rate"] == run.metrics["synth/acceptance_rate"]
    assert run.metrics["synth/flops_rollout"] == pytest.approx(meta["flops_rollout"])
    assert run.tags["dataset_fingerprint"] == meta["fingerprint"] and run.tags["synth_key"] == synth.key(cfg)
    # a second call reuses the set: same records, no new run; a larger D_SFT is a superset
    assert data.select(cfg, "sft") == served and len(_runs(tmp_path)) == 1
    more = _cfg(tmp_path, teacher, "data.d_sft=" + str(meta["examples"]))
    assert synth.key(more) == synth.key(cfg) and data.select(more, "sft")[:8] == served
    too_many = _cfg(tmp_path, teacher, f"data.d_sft={meta['examples'] + 1}")
    with pytest.raises(ConfigError, match="data.d_sft.*holds"):
        data.select(too_many, "sft")


def test_eval_prompts_are_never_synthesised(tmp_path):
    cfg = _cfg(tmp_path, "xs")
    evals = data.select(cfg, "eval")
    hooks = synth.Data(select=lambda c, role, n=None: (evals[:5] + data.select(c, role, n=n))
                       if role == "sft_candidates" else data.select(c, role, n=n),
                       fingerprint=data.fingerprint)
    pool, dropped = synth.candidates(cfg, hooks)
    assert dropped == 5 and len(pool) == 24
    leak = [dict(evals[0], extra_info={**evals[0]["extra_info"], "sft_response": "#1"})]
    with pytest.raises(AssertionError, match="eval prompt"):
        synth.store(cfg, hooks, leak, {}, 0.0, 0, pool)


def test_key_follows_every_setting(tmp_path):
    base = synth.key(_cfg(tmp_path, "xs"))
    for extra in ("data.sft_source.k=8", "data.sft_source.cap=1", "data.seed=1",
                  "data.difficulties=[2]", "data.sft_source.prompts=48", "data.sft_source.teacher=s"):
        assert synth.key(_cfg(tmp_path, "xs", extra)) != base, extra
    for source in ({"temperature": 0.7}, {"top_p": 0.9}, {"max_new_tokens": 20}):
        assert synth.key(_cfg(tmp_path, "xs", **source)) != base, source
    assert synth.key(_cfg(tmp_path, "xs", "data.n_eval=48", "rl.lr=1e-3")) == base


def test_d_sft_without_worked_examples_needs_a_source(tmp_path):
    over = ["data.dataset=guru", "reward.name=guru", "data.domains=[math]",
            f"data.path={tmp_path}", "~grid.axes.model"]
    with pytest.raises(ConfigError, match="data.d_sft.*sft_source"):
        load("smoke", over)
    cfg = load("smoke", over + ["data.sft_source={teacher: s}"])
    assert (cfg.data.sft_source.k, cfg.data.sft_source.cap, cfg.data.sft_source.prompts) == (8, 2, None)
    with pytest.raises(ConfigError, match="data.sft_source.k"):
        load("smoke", over + ["data.sft_source={teacher: s, k: 0}"])


def test_verl_generation_command_composes_against_verls_config(tmp_path):
    from core.backends.verl import compose_verl
    from core.synth import verl
    cfg = _cfg(tmp_path, "xs", temperature=0.6, top_p=0.95, max_new_tokens=20)
    argv = verl.generation_command(cfg, tmp_path / "work")
    assert argv[1:3] == ["-m", "verl.trainer.main_generation_server"]
    c = compose_verl(argv[3:])
    r = c.actor_rollout_ref.rollout
    assert (r.n, r.temperature, r.top_p, r.response_length) == (4, 0.6, 0.95, 20)
    assert c.data.output_path == str((tmp_path / "work" / "generations.parquet").resolve())
    assert c.data.train_files == str((tmp_path / "work" / "prompts.parquet").resolve())
    assert c.data.prompt_key == "prompt" and r.name == "vllm"
    assert c.actor_rollout_ref.model.path == synth.teacher_source(cfg)
    assert c.trainer.n_gpus_per_node * c.trainer.nnodes % r.tensor_model_parallel_size == 0


def test_verl_output_is_ingested_like_a_local_run(tmp_path, teacher):
    import pandas as pd
    from core.synth import verl
    cfg = _cfg(tmp_path, teacher, "data.sft_source.k=2")
    prompts = verl.write_prompts(cfg, _hooks(), tmp_path / "work")
    frame = pd.read_parquet(prompts)
    assert len(frame) == 24 and frame["prompt"][0][0]["role"] == "user"
    gts = [json.loads(r)["reward_model"]["ground_truth"] for r in frame["record"]]
    frame["responses"] = [[f"#{g}", "#-1"] for g in gts]          # what the server writes back
    frame.to_parquet(tmp_path / "work" / "generations.parquet")
    out = verl.ingest(cfg, _hooks(), tmp_path / "work" / "generations.parquet", log=lambda *_: None)
    meta = json.loads((out / "meta.json").read_text())
    assert meta["examples"] == 24 and meta["stats"]["arith"]["accepted"] == 24
    assert meta["flops_rollout"] > 0
    assert len(data.select(cfg, "sft")) == 8


def test_cli_prints_the_verl_command(tmp_path, py):
    res = py("-m", "core.synth", "grid=smoke", "model=xs", "~grid.axes.model", "data.d_sft=8",
             "data.sft_source={teacher: xs, k: 2, prompts: 16}", "data.n_eval=8",
             f"cache_dir={tmp_path / 'cache'}", "--verl-command", "--workdir", str(tmp_path / "w"))
    assert res.returncode == 0, res.stderr
    assert "verl.trainer.main_generation_server" in res.stdout and "actor_rollout_ref.rollout.n=2" in res.stdout
    assert list((tmp_path / "w").glob("*/prompts.parquet"))
    bad = py("-m", "core.synth", "grid=smoke", "data.sft_source={teacher: xs, k: 0}")
    assert bad.returncode == 2 and "data.sft_source.k" in bad.stderr
