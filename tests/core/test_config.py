import pytest

from core import config, schema
from core.errors import ConfigError, UserError


def test_demo_pairs_every_size_with_its_matched_control():
    cfg = config.load("demo", [])
    trials = [t for _, t in config.expand(cfg)]
    assert [(t.model, t.rl.algorithm) for t in trials] == [
        (m, a) for m in ("xxs", "xs", "s", "m") for a in ("grpo", "sft")]
    assert cfg.data.domains == ("pad",) and cfg.data.sft_noise == 0.3
    for t in trials:       # RL and control share base, data, steps and evals
        assert (t.data, t.sft, t.rl.steps, t.eval) == (cfg.data, cfg.sft, cfg.rl.steps, cfg.eval)
    n = [cfg.ladder.sizes[m].params for m in ("xxs", "xs", "s", "m")]
    assert n == sorted(n) and n[-1] / n[0] > 100


def test_smoke_composes_into_typed_config():
    cfg = config.load("smoke", [])
    assert cfg.grid.name == "smoke" and cfg.backend == "local"
    assert cfg.ladder.name == "tiny" and {"xs", "s", "m"} <= set(cfg.ladder.sizes)
    assert cfg.grid.axes["model"] == ("xs", "s", "m")
    assert cfg.rl.lr is None and isinstance(cfg.rl_lr, float) and cfg.rl_lr == cfg.size.rl_lr
    assert isinstance(cfg.data.domains, tuple)
    trials = config.expand(cfg)
    assert len(trials) == 6
    assert {t.model for _, t in trials} == {"xs", "s", "m"}
    assert {t.seed for _, t in trials} == {0, 1}


def test_overrides_follow_hydra_grammar():
    cfg = config.load("smoke", ["rl.steps=3", "eval.k_max=4", "grid.axes.seed=[5]",
                               "~grid.axes.model", "rl.kl_coef=0.01"])
    assert cfg.rl.steps == 3 and cfg.eval.k_max == 4 and cfg.rl.kl_coef == 0.01
    assert cfg.grid.axes == {"seed": (5,)}
    cfg = config.load("smoke", ["scale=r1", "model=r1-7b", "~grid.axes.model"])
    assert cfg.size.path == "deepseek-ai/DeepSeek-R1-Distill-Qwen-7B"
    assert cfg.size.resources.gpus == 8 and cfg.preset == "r1" and cfg.backend == "verl"
    assert cfg.rl.max_new_tokens == 16384 and cfg.eval.n_samples == cfg.eval.k_max == 128


def test_every_grid_file_validates():
    for name in config.grid_names():
        cfg = config.load(name, [])
        assert cfg.grid.description
        assert config.expand(cfg)


BAD = [
    # (overrides, key named in the message, other fragments of the message)
    (["eval.k_max=32"], "eval.k_max", ["32", "eval.n_samples (16)"]),
    (["rl.lr=fast"], "rl.lr", ["'fast'", "expected a number"]),
    (["rl.steps=2.5"], "rl.steps", ["2.5", "expected an integer"]),
    (["backend=jax"], "backend", ["'jax'", "allowed: local, verl"]),
    (["+rl.learning_rate=1e-4"], "rl.learning_rate", ["unknown key", "lr", "group_size"]),
    (["reward.name=neural"], "reward.name", ["'neural'", "guru", "learned_rm", "synthetic"]),
    (["curriculum.name=hard_first"], "curriculum.name", ["'hard_first'", "mixed"]),
    (["data.domains=[arith,chess]"], "data.domains.1", ["'chess'", "arith, sort, rev"]),
    (["model=huge", "~grid.axes.model"], "model", ["'huge'", "xxxs, xxs, xs, s, m, l"]),
    (["grid.axes.model=[xs,xxl]"], "grid.axes.model", ["'xxl'", "xxxs, xxs, xs, s, m, l"]),
    (["+grid.axes.rl.lrr=[1,2]"], "grid.axes.rl.lrr", ["unknown key", "no `lrr` under `rl`"]),
    (["rl.group_size=1"], "rl.group_size", ["at least 2 samples"]),
    (["rl.loss_agg_mode=mean"], "rl.loss_agg_mode", ["'mean'", "token-mean, seq-mean-token-sum"]),
    (["rl.kl_coef=0"], "rl.kl_coef", ["null to turn the KL term off"]),
    (["data.d_sft=0"], "sft.steps", ["both be 0"]),
    (["eval.temperature=0"], "eval.temperature", ["must be > 0"]),
    (["backend=verl", "device=gpu"], "backend", ["scale=r1", "device=cpu"]),
    (["ladder=r1_distill", "model=r1-7b", "~grid.axes.model"], "ladder", ["add scale=r1"]),
    (["device=gpu"], "device", ["local backend trains on the CPU"]),
    (["data.d_rl=0"], "data.d_rl", ["must be >= 1"]),
    (["rl.temperature=true"], "rl.temperature", ["expected a number"]),
    (["resume=maybe"], "resume", ["expected true or false"]),
    (["tracking.tracking_uri=ftp://x"], "tracking.tracking_uri", ["'ftp://x'", "sqlite:////abs/path"]),
    (["rl.temperature=inf"], "rl.temperature", ["finite number"]),
    (["data.seed=-1"], "data.seed", ["-1", "[0, 2^32)"]),
    (["rl.steps=0"], "rl.steps", ["must be >= 1"]),
]


@pytest.mark.parametrize("overrides,key,fragments", BAD, ids=[b[1] + ":" + b[0][0] for b in BAD])
def test_bad_input_names_key_value_and_allowed(overrides, key, fragments):
    with pytest.raises(ConfigError) as err:
        config.load("smoke", overrides)
    msg = str(err.value)
    assert err.value.key == key, msg
    assert f"`{key}`" in msg
    for fragment in fragments:
        assert fragment in msg, msg


def test_hydra_level_errors_are_one_message():
    with pytest.raises(UserError, match="nosuchkey"):
        config.load("smoke", ["nosuchkey=1"])          # missing '+' for a new key
    with pytest.raises(ConfigError) as err:
        config.load("nosuchgrid", [])
    assert "demo" in str(err.value) and "model_scaling" in str(err.value)


def test_schema_roundtrip_and_required_keys():
    cfg = config.load("smoke", [])
    assert schema.build(config.Config, schema.to_dict(cfg)) == cfg
    raw = schema.to_dict(cfg)
    del raw["model"]
    with pytest.raises(ConfigError, match="required key is missing"):
        schema.build(config.Config, raw)


def test_search_metric_must_be_reported():
    with pytest.raises(ConfigError, match="val/pass_at_1") as err:
        config.load("smoke", ["~grid.axes", "+grid.search={metric: accuracy, mode: max, "
                             "num_samples: 4, space: {rl.lr: {low: 1e-5, high: 1e-3}}}"])
    assert err.value.key == "grid.search.metric"


def test_search_and_axes_are_exclusive():
    with pytest.raises(ConfigError, match="either `axes`"):
        config.load("smoke", ["+grid.search={metric: val/pass_at_1, mode: max, num_samples: 4,"
                             " space: {rl.lr: {low: 1e-5, high: 1e-3, log: true}}}"])


def test_ladder_size_names_must_be_config_keys():
    from core.errors import UserError
    with pytest.raises(UserError, match=r"ladder.sizes.1\.5b.*a letter first"):
        config.load("smoke", ["+ladder.sizes={1.5b: {path: x, resources: {gpus: 1}}}"])


def test_include_adds_points_beside_the_axes_product():
    """grid.include: extra trials (a baseline the axes would only repeat), each checked as a
    trial; a bad key is named with the point's index."""
    cfg = config.load("smoke", ["+grid.include=[{reward.format_weight: 0.5, rl.steps: 3}]"])
    points = config.points(cfg)
    product = 1
    for values in cfg.grid.axes.values():
        product *= len(values)
    assert len(points) == product + 1 and all(set(p) == set(cfg.grid.axes) for p in points[:-1])
    assert points[-1] == {"reward.format_weight": 0.5, "rl.steps": 3}
    values, trial = config.expand(cfg)[-1]
    assert trial.reward.format_weight == 0.5 and trial.rl.steps == 3 and trial.seed == cfg.seed
    with pytest.raises(ConfigError, match=r"unknown key") as err:
        config.load("smoke", ["+grid.include=[{rl.stepz: 3}]"])
    assert err.value.key == "grid.include[0]" and "rl.stepz" in str(err.value)
    with pytest.raises(ConfigError, match="invalid as model") as err:
        config.load("smoke", ["+grid.include=[{model: huge}]"])
    assert err.value.key == "grid.include[0]"
