"""The Guru-RL-92k loader on folders written in Guru's layout and schema (every domain, the
compressed variant), its validation errors, stratified subsampling, the fingerprint, grading,
and one local-backend trial on the fixture data."""
import json
from collections import Counter
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from core import grading
from core.config import load as load_cfg
from core.errors import ConfigError, UserError
from plugins.datasets import _guru_sample as sample
from plugins.datasets import guru
from plugins.rewards.guru import domain_of, parse_value

ALL = guru.DOMAINS
PER_DOMAIN = {d: len(sample.SOURCES[d]) for d in ALL}      # source files per domain


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return sample.write(tmp_path_factory.mktemp("guru"), n_train=40, n_eval=12)


@pytest.fixture(scope="module")
def compressed(tmp_path_factory):
    return sample.write(tmp_path_factory.mktemp("guru_c"), n_train=40, n_eval=12, compressed=True)


def test_every_domain_loads_with_guru_fields(folder):
    recs = guru.load("train", 40 * sum(PER_DOMAIN.values()), domains=ALL, path=str(folder))
    assert Counter(r["extra_info"]["domain"] for r in recs) == {d: 40 * n for d, n in PER_DOMAIN.items()}
    for r in recs:
        assert set(r) == {"data_source", "prompt", "ability", "reward_model", "extra_info"}
        assert domain_of(r["data_source"]) == r["extra_info"]["domain"]
        assert r["prompt"][0]["role"] == "user" and r["prompt"][0]["content"]
        assert r["reward_model"]["style"] == "rule" and r["reward_model"]["ground_truth"] is not None
    ev = guru.load("eval", 12 * sum(PER_DOMAIN.values()), domains=ALL, path=str(folder))
    assert {r["extra_info"]["split"] for r in ev} == {"eval"}


def test_released_data_source_names_load_in_their_files(folder):
    """WebInstruct rows say ``stem_web`` (and carry no reward_model.style), ARC rows in the
    logic__arcagi1 / logic__barc files say ``simulation__arcagi1`` / ``simulation__barc``."""
    recs = guru.load("train", 40 * 6, domains=("logic", "stem"), path=str(folder))
    by_source = {r["extra_info"]["source"]: r["data_source"] for r in recs}
    assert by_source == {"web": "stem_web", "arcagi1": "simulation__arcagi1", "barc": "simulation__barc",
                         "zebra_puzzle": "logic__zebra_puzzle_dataset",
                         "ordering_puzzle": "logic__ordering_puzzle_dataset",
                         "graph_logical": "logic__graph_logical_dataset"}
    raw = pq.read_table(next((Path(folder) / "train").glob("stem__web_*.parquet"))).to_pylist()
    assert "style" not in raw[0]["reward_model"]          # as Reasoning360's webinstruct.py writes it
    arc = next(r for r in recs if r["extra_info"]["source"] == "arcagi1")
    assert all(isinstance(row, list) and all(isinstance(c, int) for c in row)
               for row in arc["reward_model"]["ground_truth"])


def test_codeio_input_predictions_keep_the_reference_code(folder):
    """So the verifier can accept any input that gives the shown output."""
    recs = guru.load("train", 40, domains=("simulation",), path=str(folder))
    inputs = [r for r in recs if str(r["reward_model"]["ground_truth"]).startswith('"input"')]
    outputs = [r for r in recs if str(r["reward_model"]["ground_truth"]).startswith('"output"')]
    assert inputs and outputs
    assert all("def main_solution" in r["extra_info"]["codeio"]["refcode"] for r in inputs)
    assert all(json.loads(r["extra_info"]["codeio"]["given_output"]) for r in inputs)
    assert not any("codeio" in r["extra_info"] for r in outputs)


def test_compressed_variant_decodes_to_the_same_records(folder, compressed):
    plain = guru.load("train", 60, domains=("codegen", "logic"), path=str(folder), seed=3)
    packed = guru.load("train", 60, domains=("codegen", "logic"), path=str(compressed), seed=3)
    strip = lambda rs: [(r["data_source"], r["prompt"], parse_value(r["reward_model"]["ground_truth"]),
                         r["extra_info"].get("index"), r["extra_info"]["source"]) for r in rs]
    assert strip(plain) == strip(packed)


def test_pass_rates_grade_difficulty_and_missing_ones_stay_ungraded(folder):
    recs = guru.load("train", 80, domains=("math", "codegen"), path=str(folder))
    for r in recs:
        rate = r["extra_info"]["pass_rate"]
        if r["extra_info"]["domain"] == "math":
            assert r["extra_info"]["pass_rate_source"] == "qwen2.5_7b_pass_rate"
            assert r["extra_info"]["difficulty"] == grading.difficulty_level(rate) != 0
        else:
            assert rate is None and r["extra_info"]["difficulty"] == grading.UNGRADED


def test_difficulty_levels_select_graded_records(folder):
    easy = guru.load("train", 5, domains=("math",), difficulties=(1,), path=str(folder))
    assert {r["extra_info"]["difficulty"] for r in easy} == {1}
    with pytest.raises(ValueError, match="holds"):
        guru.load("train", 40, domains=("math",), difficulties=(1,), path=str(folder))


def test_stratified_subsample_is_proportional_seeded_and_fingerprinted(folder):
    from core.data import fingerprint
    pool = guru.load("train", 120, domains=("math", "logic", "table"), path=str(folder), seed=0)
    cells = Counter((r["extra_info"]["domain"], r["extra_info"]["difficulty"]) for r in pool)
    sub = guru.stratified_sample(pool, 30, seed=1)
    got = Counter((r["extra_info"]["domain"], r["extra_info"]["difficulty"]) for r in sub)
    assert len(sub) == 30
    for cell, size in cells.items():     # each cell within one of its proportional share
        assert abs(got[cell] - 30 * size / 120) < 1, (cell, got[cell], size)
    again = guru.stratified_sample(pool, 30, seed=1)
    other = guru.stratified_sample(pool, 30, seed=2)
    assert fingerprint(sub) == fingerprint(again) != fingerprint(other)


def test_sources_select_files(folder):
    recs = guru.load("train", 40, domains=ALL, sources=("ordering_puzzle",), path=str(folder))
    assert {r["data_source"] for r in recs} == {"logic__ordering_puzzle_dataset"}
    assert {r["extra_info"]["source"] for r in recs} == {"ordering_puzzle"}
    recs = guru.load("train", 80, domains=ALL, sources=("logic__arcagi1", "barc"), path=str(folder))
    assert {r["data_source"] for r in recs} == {"simulation__arcagi1", "simulation__barc"}
    recs = guru.load("train", 40, domains=ALL, sources=("codegen__taco",), path=str(folder))
    assert {r["data_source"] for r in recs} == {"codegen__taco"}


def test_domain_without_online_eval_holds_out_part_of_train(tmp_path):
    root = sample.write(tmp_path, n_train=200, n_eval=10, domains=("math", "stem"), eval_domains=("math",))
    pools, _ = guru._pools(str(root), ("math", "stem"), (), False)
    stem_eval = [r for r in pools["eval"] if r["extra_info"]["domain"] == "stem"]
    stem_train = [r for r in pools["train"] if r["extra_info"]["domain"] == "stem"]
    assert 0 < len(stem_eval) < 60 and len(stem_eval) + len(stem_train) == 200
    prompts = lambda rs: {r["prompt"][0]["content"] + str(r["extra_info"]["index"]) for r in rs}
    assert not prompts(stem_eval) & prompts(stem_train)


def _write_bad(root: Path) -> Path:
    (root / "train").mkdir(parents=True)
    rows = sample.rows("table", 6, 0)
    rows[1]["prompt"] = []                                   # empty prompt
    rows[2]["reward_model"] = {"style": "rule", "ground_truth": None}
    rows[3]["data_source"] = "math__wrong_domain"
    rows[4]["qwen2.5_7b_pass_rate"] = 1.7
    pq.write_table(pa.Table.from_pylist(rows), root / "train" / "table__hitab_6.parquet")
    return root


def test_bad_rows_are_reported_with_file_row_and_field(tmp_path):
    root = _write_bad(tmp_path)
    with pytest.raises(guru.GuruDataError) as err:
        guru.load("train", 2, domains=("table",), path=str(root))
    msg = str(err.value)
    assert "4 bad row(s)" in msg and "data.skip_bad_rows=true" in msg
    for row, field in ((1, "prompt"), (2, "reward_model.ground_truth"), (3, "data_source"),
                       (4, "qwen2.5_7b_pass_rate")):
        assert f"table__hitab_6.parquet: row {row}: field {field}: expected" in msg


def test_skip_bad_rows_counts_and_skips(tmp_path):
    root = _write_bad(tmp_path)
    recs = guru.load("train", 2, domains=("table",), path=str(root), skip_bad_rows=True)
    assert {r["extra_info"]["row"] for r in recs} <= {0, 5}
    assert guru.bad_row_count(str(root), ("table",)) == 4


def test_bad_folder_and_file_names(tmp_path):
    with pytest.raises(guru.GuruDataError, match="neither a folder nor a hub dataset id"):
        guru.load("train", 1, domains=("math",), path=str(tmp_path / "nope" / "x" / "y"))
    (tmp_path / "train").mkdir()
    (tmp_path / "train" / "notguru.parquet").write_bytes(b"")
    with pytest.raises(guru.GuruDataError, match=r"\{domain\}__\{source\}_\{size\}.parquet"):
        guru.load("train", 1, domains=("math",), path=str(tmp_path))


def test_config_selects_guru_and_rejects_what_does_not_fit(folder):
    from core.data import select
    cfg = load_cfg("guru", [f"data.path={folder}", "data.domains=[math,logic]"])
    train, ev = select(cfg, "train"), select(cfg, "eval")
    assert len(train) == cfg.data.d_rl and len(ev) == cfg.data.n_eval
    assert {r["extra_info"]["domain"] for r in train} == {"math", "logic"}
    too_many = load_cfg("guru", [f"data.path={folder}", "data.domains=[math]", "data.d_rl=500"])
    with pytest.raises(ConfigError, match="data.d_rl"):
        select(too_many, "train")
    with pytest.raises(UserError, match="data.path.*not used by dataset 'synthetic'"):
        load_cfg("smoke", [f"data.path={folder}"])
    with pytest.raises(UserError, match="no worked examples"):
        load_cfg("guru", ["data.d_sft=10", "sft.steps=5"])
    with pytest.raises(UserError, match="reward.name.*allowed: guru"):
        load_cfg("guru", ["reward.name=synthetic"])


def test_grading_with_a_policy_is_cached(tmp_path):
    recs = [{"data_source": "stem__web", "prompt": [{"role": "user", "content": f"q{i}"}],
             "extra_info": {"difficulty": 0}} for i in range(5)]
    calls = []

    def sample_fn(batch, n):          # prompt i is answered right i times out of 4
        calls.append(len(batch))
        return [f"{int(r['prompt'][0]['content'][1:]) > j}" for r in batch for j in range(n)]

    def score_fn(batch, texts, n):
        return [t == "True" for t in texts]

    cache = tmp_path / "grades.json"
    assert grading.grade_with_policy(recs, sample_fn, score_fn, 4, cache, log=lambda *a: None) == 5
    rates = [r["extra_info"]["pass_rate"] for r in recs]
    assert rates == [0.0, 0.25, 0.5, 0.75, 1.0]
    assert [r["extra_info"]["difficulty"] for r in recs] == [4, 3, 2, 1, 1]
    fresh = [{**r, "extra_info": {"difficulty": 0}} for r in recs]
    assert grading.grade_with_policy(fresh, sample_fn, score_fn, 4, cache, log=lambda *a: None) == 0
    assert [r["extra_info"]["pass_rate"] for r in fresh] == rates and sum(calls) == 5


def test_local_trial_runs_on_guru_fixture_data(folder, tmp_path):
    """The real path end to end: loader, policy grading, verifiers and sandbox, GRPO, eval."""
    from core.trial import run_trial
    cfg = load_cfg("guru", [f"data.path={folder}", "data.domains=[math,codegen]", "model=xs",
                            "rl.steps=2", "eval.every=2", f"cache_dir={tmp_path}/cache"])
    logs = []
    steps = list(run_trial(cfg, tmp_path / "trial", log=logs.append))
    assert len(steps) == 3        # step 0 (evaluation only) and two RL steps
    last = steps[-1][0]
    assert "val/math/pass_at_1" in last and "val/codegen/pass_at_1" in last
    assert 0.0 <= last["val/pass_at_1"] <= 1.0
    assert any("[grading]" in line for line in logs)    # codegen has no pass rates
    assert list((tmp_path / "cache" / "grades").glob("*.json"))
