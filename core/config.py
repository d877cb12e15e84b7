"""The typed experiment config: one schema, each option documented once, validated at load.

The types and the documentation of every key live here; their default values live in one
place only, ``tune/config.yaml`` (and the ladder and grid files): the dataclasses below carry
no defaults for the keys that file sets, so the two cannot disagree.

``load(grid, overrides)`` composes ``tune/`` with Hydra's compose API (so ``key=value``,
``+key=value`` and ``~key`` behave as in verl), builds the frozen :class:`Config` and checks
the combinations that types cannot express (``eval.k_max <= eval.n_samples``, plugin names,
ladder sizes, grid axes). Every failure is a :class:`core.errors.ConfigError` naming the key,
the value and what is allowed; nothing expensive has started when it is raised.
"""
from __future__ import annotations

import copy
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from core import schema
from core.errors import ConfigError, UserError
from core.hydra_utils import flatten_keys, hydra_value

CONFIG_DIR = Path(__file__).resolve().parent.parent / "tune"


@dataclass(frozen=True)
class Arch:
    """Qwen2 architecture of a size built from scratch (the ``tiny`` ladder)."""
    hidden_size: int
    num_layers: int
    num_heads: int
    num_kv_heads: int
    intermediate_size: int
    max_position_embeddings: int = 64


@dataclass(frozen=True)
class Shape:
    """Architecture numbers of a hub checkpoint (its config.json), so FLOPs and GPU-hours can
    be estimated before anything is downloaded."""
    hidden_size: int
    num_layers: int
    num_heads: int
    num_kv_heads: int
    intermediate_size: int
    vocab_size: int


@dataclass(frozen=True)
class Resources:
    """Per-trial resources. ``gpus`` are per node; verl trials span ``nodes`` nodes."""
    cpus: float = 1.0
    gpus: int = 0
    nodes: int = 1


@dataclass(frozen=True)
class Size:
    """One rung of a ladder: built from ``arch`` (tiny) or loaded from ``path`` (a Hugging
    Face hub id or a local folder). ``params`` is the parameter count (checked for tiny)."""
    params: int | None = None
    path: str | None = None
    arch: Arch | None = None
    sft_lr: float | None = None                          # this size's SFT learning rate, used when sft.lr is null
    rl_lr: float | None = None                           # this size's RL learning rate, used when rl.lr is null
    resources: Resources = Resources()
    shape: Shape | None = None                           # hub checkpoints: architecture numbers for cost estimates
    verl: dict[str, Any] = field(default_factory=dict)   # verl keys for this size (parallelism,
                                                         # offload), over the top-level `verl` map


@dataclass(frozen=True)
class Ladder:
    name: str
    description: str
    sizes: dict[str, Size]
    preset: str | None = None       # the real-scale preset this ladder needs (scale=<preset>)


@dataclass(frozen=True)
class SftSource:
    """SFT worked examples synthesised by rejection sampling (``core/synth``): ``k`` samples
    per train prompt from ``teacher``, those the dataset's verifier accepts kept, deduplicated,
    at most ``cap`` per prompt, cached under ``<cache_dir>/synth/<key>``; ``data.d_sft``
    examples are drawn from them. Unset keys take the defaults below (the YAML sets
    ``data.sft_source: null``: the dataset's own worked examples)."""
    teacher: str                      # a ladder size, a checkpoint folder (a trial's policy) or a hub id
    k: int = 8                        # samples per prompt
    cap: int = 2                      # verified, distinct responses kept per prompt
    temperature: float = 1.0
    top_p: float = 1.0
    max_new_tokens: int | None = None  # null: rl.max_new_tokens
    prompts: int | None = None        # train prompts sampled (null: data.d_sft); set it to share
                                      # one synthesis across a D_SFT sweep


@dataclass(frozen=True)
class Data:
    dataset: str                    # dataset plugin
    domains: tuple[str, ...]        # must be among the plugin's domains
    difficulties: tuple[int, ...]   # difficulty levels drawn
    d_rl: int                       # RL prompts in the pool (D_RL)
    d_sft: int                      # SFT worked examples (D_SFT, 0 = no warm start)
    n_eval: int                     # held-out eval prompts in total
    seed: int                       # data seed (shared by the SFT base)
    path: str | None                # file-backed datasets: folder or hub id (guru)
    sources: tuple[str, ...]        # file-backed datasets: sources to keep (empty: all)
    skip_bad_rows: bool             # count and skip invalid rows instead of failing
    balance_eval: bool              # file-backed datasets: eval prompts drawn equally
                                    # from every domain (else in proportion to size)
    grade_samples: int              # samples per prompt when the base policy grades
                                    # ungraded prompts' difficulty (0: do not grade)
    sft_source: SftSource | None    # null: the dataset's own worked examples; else SFT
                                    # examples synthesised by rejection sampling (core/synth)
    eval_domains: tuple[str, ...] | None          # eval prompts from these (null: data.domains):
                                    # train on one domain, evaluate on every one (transfer)
    sft_domains: tuple[str, ...] | None           # SFT examples from these (null: data.domains):
                                    # one base that has seen every domain, RL on one
    sft_noise: float                # synthetic: share of worked examples with one slip in
                                    # the answer (fixed per record; the demo's imperfect teacher);
                                    # environments: the teacher's per-turn slip probability


@dataclass(frozen=True)
class RM:
    """The learned reward model (``reward.name=learned_rm``): a Bradley-Terry RM of ladder size
    ``size`` trained on ``d_rm`` preference pairs from the policy base's samples, labelled by
    the ``gold`` rule reward, served by Ray Serve and queried over HTTP."""
    size: str                         # ladder size of the RM
    d_rm: int                         # preference pairs (D_RM)
    n_eval_pairs: int                 # held-out pairs (eval split) for accuracy / calibration
    steps: int                        # Bradley-Terry training steps
    batch_size: int                   # pairs per step
    lr: float
    init: Literal["base", "random"]   # backbone: the size's SFT base, or random init
    gold: str                         # rule reward that labels pairs and scores gold reward
    url: str | None                   # base URL of a running endpoint (http://host:port);
                                      # None: the grid starts one on `port`
    port: int
    token: str | None                 # bearer token of the endpoint (None: no auth)
    max_batch_size: int               # Serve batching: items per forward
    timeout_s: float                  # per HTTP request
    retries: int                      # on connection errors and 5xx, with backoff
    negatives: Literal["any", "hard"]  # rejected response: any wrong sample, or a
                                      # well-formed wrong one (differs in correctness, not format)


@dataclass(frozen=True)
class Reward:
    name: str                       # reward plugin
    format_weight: float            # weight of the format score added to correctness
    options: dict[str, Any]         # the plugin's own settings
    rm: RM


@dataclass(frozen=True)
class Curriculum:
    name: str                       # curriculum plugin
    options: dict[str, Any]         # the plugin's own settings


@dataclass(frozen=True)
class SFT:
    steps: int
    batch_size: int
    lr: float | None                # null: the ladder size's sft_lr


@dataclass(frozen=True)
class RL:
    steps: int
    prompts_per_step: int
    group_size: int                                                                     # samples per prompt (G)
    lr: float | None                                                                    # null: the ladder size's rl_lr
    warmup_steps: int                                                                   # linear learning-rate warmup (Adam's first steps
                                                                                        # are sign-like and large without it)
    temperature: float
    top_p: float
    max_new_tokens: int                                                                 # response budget in tokens
    max_prompt_tokens: int                                                              # prompt budget in tokens (verl's data.max_prompt_length;
                                                                                        # longer prompts are an error there)
    clip_ratio: float
    kl_coef: float | None                                                               # None: no reference model, no KL term
    max_grad_norm: float
    loss_agg_mode: Literal["token-mean", "seq-mean-token-sum", "seq-mean-token-mean"]
    adv_estimator: Literal["grpo"]
    max_flops: float | dict[str, float] | None   # stop at the first step whose training FLOPs
                                    # reach it (compare curricula at equal compute); a mapping
                                    # gives each ladder size its own budget; null: rl.steps
    algorithm: Literal["grpo", "sft"]                                                   # sft: the matched control, SFT continued for
                                                                                        # rl.steps steps from the same base at RL's lr
                                                                                        # and warmup, same evals
    engine: Literal["vllm", "sglang"]                                                   # rollout engine of the verl backend


@dataclass(frozen=True)
class Eval:
    every: int                      # evaluate at step 0, every `every` steps and at the end
    n_samples: int                  # samples per eval prompt (n of pass@k)
    k_max: int                      # largest k; pass@k_max is the creativity index
    temperature: float
    top_p: float


@dataclass(frozen=True)
class SearchDim:
    low: float
    high: float
    log: bool = False
    type: Literal["float", "int"] = "float"


@dataclass(frozen=True)
class Search:
    """A continuous search (Optuna) instead of a grid."""
    metric: str
    mode: Literal["max", "min"]
    num_samples: int
    space: dict[str, SearchDim]


@dataclass(frozen=True)
class Grid:
    name: str
    description: str
    search: Search | None                                               # an Optuna search instead of axes
    max_concurrent: int | None                                          # None: as many trials at once as resources allow
    axes: dict[str, tuple[Any, ...]] = field(default_factory=dict)      # dotted key -> values
                                                                        # per preset, this grid's values at that scale (dotted key -> value), applied when
                                                                        # `scale=<preset>` is selected, before command-line overrides: at_scale.r1 = {...}
    at_scale: dict[str, dict[str, Any]] = field(default_factory=dict)
    # extra trials run besides the axes' product, each a map of dotted keys to values (a
    # baseline that the axes would only repeat: the rule reward beside RM size x D_RM)
    include: tuple[dict[str, Any], ...] = ()
    # report sections, in page order (core/report/sections.py); None: chosen from the runs
    # (findings and scaling, and rm where trials trained against a learned RM)
    report: tuple[Literal["findings", "scaling", "rm", "rules", "horizon", "transfer", "curriculum"], ...] | None = None


@dataclass(frozen=True)
class Estimate:
    """How ``--cfg`` / ``--dry-run`` turn FLOPs into GPU-hours (``core/estimate.py``)."""
    gpu: str
    peak_tflops: float              # per GPU
    mfu: float                      # model FLOPs utilisation of a whole RL step
    response_fill: float            # expected response length / rl.max_new_tokens


@dataclass(frozen=True)
class Tracking:
    tracking_uri: str | None        # None: $MLFLOW_TRACKING_URI or sqlite in the project
    experiment: str | None          # None: the grid's name


@dataclass(frozen=True)
class Config:
    grid: Grid
    ladder: Ladder
    model: str                              # ladder size of this trial
    backend: Literal["local", "verl"]
    preset: str | None                      # set by tune/scale/<name>.yaml (scale=<name>)
    device: Literal["auto", "gpu", "cpu"]   # verl: gpu (vLLM/SGLang) or cpu (its real trainer
                                            # without a GPU); auto: gpu when the cluster (or this
                                            # machine) has GPUs
    seed: int                               # RL seed
    data: Data
    reward: Reward
    curriculum: Curriculum
    sft: SFT
    rl: RL
    eval: Eval
    estimate: Estimate
    tracking: Tracking
    resume: bool                            # continue the newest run of this grid (Tuner.restore)
    output_dir: str                         # run folders: <output_dir>/<grid>/<stamp>/
    cache_dir: str                          # SFT bases, tiny models, RMs, difficulty grades
    verl: dict[str, Any]                    # verl keys passed through as is (backend=verl): verl.a.b=value

    @property
    def size(self) -> Size:
        return self.ladder.sizes[self.model]

    @property
    def rl_lr(self) -> float:
        """The RL learning rate in effect: ``rl.lr``, else the size's ``rl_lr``."""
        return self.rl.lr if self.rl.lr is not None else self.size.rl_lr

    @property
    def sft_lr(self) -> float:
        return self.sft.lr if self.sft.lr is not None else self.size.sft_lr


# ---------------------------------------------------------------- composition

def grid_names() -> list[str]:
    return sorted(p.stem for p in (CONFIG_DIR / "grid").glob("*.yaml"))


def grid_descriptions() -> dict[str, str]:
    import yaml
    out = {}
    for name in grid_names():
        doc = yaml.safe_load((CONFIG_DIR / "grid" / f"{name}.yaml").read_text()) or {}
        out[name] = str((doc.get("grid") or {}).get("description", "")).strip()
    return out


def compose(grid: str, overrides: list[str] = ()) -> dict:
    """Compose ``tune/config.yaml`` with ``grid=<grid>`` and the overrides; a plain dict.

    With a real-scale preset selected (``scale=r1``), the grid's own values at that scale
    (``grid.at_scale.<preset>``) apply after the preset and before the command line."""
    if grid not in grid_names():
        raise ConfigError("grid", grid, "no such file under tune/grid/", allowed=grid_names())
    # verl keys pass through: `verl.a.b=v` adds (or replaces) a key under the open `verl` map
    overrides = [f"++{o}" if o.startswith("verl.") else o for o in overrides]
    data = _hydra(grid, overrides)
    at_scale = flatten_keys((data["grid"].get("at_scale") or {}).get(data.get("preset")) or {})
    if at_scale:
        data = _hydra(grid, [f"++{k}={hydra_value(v)}" for k, v in at_scale.items()] + overrides)
    data["grid"]["name"] = grid
    data["grid"]["axes"] = flatten_keys(data["grid"].get("axes") or {})
    data["grid"]["include"] = [flatten_keys(p) for p in data["grid"].get("include") or []]
    if data["grid"]["axes"].get("model") == "all":   # every size of the ladder in use
        data["grid"]["axes"]["model"] = list(data["ladder"]["sizes"])
        if data["model"] not in data["ladder"]["sizes"]:
            data["model"] = data["grid"]["axes"]["model"][0]
    return data


def _hydra(grid: str, overrides: list[str]) -> dict:
    from hydra import compose as hydra_compose, initialize_config_dir
    from hydra.errors import HydraException
    from omegaconf import OmegaConf
    from omegaconf.errors import OmegaConfBaseException
    try:
        with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
            cfg = hydra_compose("config", overrides=[f"grid={grid}", *overrides])
        return OmegaConf.to_container(cfg, resolve=True)
    except (HydraException, OmegaConfBaseException) as exc:
        raise UserError(_hydra_message(grid, overrides, exc)) from exc


def _hydra_message(grid: str, overrides: list[str], exc: Exception) -> str:
    """One message for a Hydra failure: an unknown key names the keys that do exist there,
    an unknown option lists every option of the group (Hydra's own list may be cut off)."""
    text = str(exc)
    msg = f"config error in overrides {list(overrides)}: {_first_line(exc)}"
    group = re.search(r"Could not find '([^/']+)/([^']+)'", text)
    if group:
        options = sorted(p.stem for p in (CONFIG_DIR / group.group(1)).glob("*.yaml"))
        return (f"config error at `{group.group(1)}`: no option {group.group(2)!r}; allowed: "
                f"{', '.join(options)}")
    bad = re.search(r"Could not override '([^']+)'", text)
    if bad and overrides:   # name the keys that do exist where the typo is
        parent, _, _ = bad.group(1).rpartition(".")
        node = _hydra(grid, [])
        for part in filter(None, parent.split(".")):
            node = node.get(part, {}) if isinstance(node, dict) else {}
        if isinstance(node, dict) and node:
            msg += f"; keys under `{parent or '<root>'}`: {', '.join(node)}"
    return msg


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return " ".join(text.splitlines()[:3]) if text else type(exc).__name__


def load(grid: str, overrides: list[str] = (), registry=None) -> Config:
    """Compose, build and check. ``registry`` defaults to the process-wide plugin registry."""
    raw = compose(grid, list(overrides))
    return validate(raw, registry)


def validate(raw: dict, registry=None) -> Config:
    cfg = schema.build(Config, raw)
    if registry is None:
        from core.plugins import registry as get_registry
        registry = get_registry()
    check(cfg, registry)
    for key, values in cfg.grid.axes.items():
        if not values:
            raise ConfigError(f"grid.axes.{key}", [], "an axis needs at least one value")
        for value in values:
            try:
                trial = with_values(raw, {key: value})
                check(schema.build(Config, trial), registry)
            except ConfigError as exc:
                raise ConfigError(f"grid.axes.{key}", value, f"invalid as {exc.key}: "
                                  f"{str(exc).split(': ', 1)[1]}") from exc
    for i, point in enumerate(cfg.grid.include):
        if not isinstance(point, dict) or not point:
            raise ConfigError(f"grid.include[{i}]", point, "a point is a non-empty map of dotted "
                              "keys to values, e.g. {reward.name: synthetic}")
        if cfg.grid.search is not None:
            raise ConfigError("grid.include", list(cfg.grid.include), "extra trials need a grid "
                              "(axes), not an Optuna search")
        try:
            check(schema.build(Config, with_values(raw, point)), registry)
        except ConfigError as exc:
            raise ConfigError(f"grid.include[{i}]", point, f"invalid as {exc.key}: "
                              f"{str(exc).split(': ', 1)[1]}") from exc
    return cfg


def expand(cfg: Config) -> list[tuple[dict[str, Any], Config]]:
    """The grid's trials: one (axis values, trial config) per point of the axes' product, then
    one per ``grid.include`` point."""
    return [(values, schema.build(Config, with_values(schema.to_dict(cfg), values)))
            for values in points(cfg)]


def points(cfg: Config) -> list[dict[str, Any]]:
    """Each trial's values (dotted key -> value): the axes' product, then ``grid.include``."""
    import itertools
    keys = list(cfg.grid.axes)
    product = [dict(zip(keys, combo)) for combo in itertools.product(*(cfg.grid.axes[k] for k in keys))]
    return product + [dict(p) for p in cfg.grid.include]


def with_values(raw: dict, values: dict[str, Any]) -> dict:
    """A copy of ``raw`` with dotted keys set; a key must already exist (no typos)."""
    out = copy.deepcopy(raw)
    for dotted, value in values.items():
        node, parts = out, dotted.split(".")
        for i, part in enumerate(parts):
            if not isinstance(node, dict) or part not in node:
                parent = ".".join(parts[:i]) or "<root>"
                allowed = list(node) if isinstance(node, dict) else None
                raise ConfigError(dotted, value, f"unknown key (no `{part}` under `{parent}`)",
                                  allowed=allowed)
            if i == len(parts) - 1:
                node[part] = value
            node = node[part]
    budget = out.get("rl", {}).get("max_flops")      # a budget per size: the trial's own
    if "model" in values and isinstance(budget, dict) and values["model"] in budget:
        out["rl"]["max_flops"] = budget[values["model"]]
    return out


def _require(ok: bool, key: str, value: Any, expected: str, allowed=None) -> None:
    if not ok:
        raise ConfigError(key, value, expected, allowed=allowed)


def check(cfg: Config, registry) -> None:
    """Checks that span keys or need the plugin registry."""
    _require(cfg.ladder.preset is None or cfg.preset == cfg.ladder.preset, "ladder", cfg.ladder.name,
             f"ladder {cfg.ladder.name!r} runs only with its real-scale settings: add "
             f"scale={cfg.ladder.preset} (tune/scale/{cfg.ladder.preset}.yaml: Guru-RL-92k, "
             "reasoning-length responses, 128 validation samples, GPUs per size)")
    _require(cfg.model in cfg.ladder.sizes, "model", cfg.model,
             f"not a size of ladder {cfg.ladder.name!r}", allowed=list(cfg.ladder.sizes))
    for name, size in cfg.ladder.sizes.items():
        _require(re.fullmatch(r"[A-Za-z_][A-Za-z0-9_-]*", name) is not None, f"ladder.sizes.{name}", name,
                 "a size name is a config key: a letter first, then letters, digits, '_' or '-' "
                 "(r1-1_5b, not 1.5b)")
        _require((size.path is None) != (size.arch is None), f"ladder.sizes.{name}",
                 {"path": size.path, "arch": size.arch},
                 "a size needs exactly one of `path` (hub id or folder) or `arch`")
    _check_plugins(cfg, registry)
    _check_numbers(cfg)
    from core.backends.checks import check_backend
    check_backend(cfg)
    if cfg.grid.search is not None:
        _require(not cfg.grid.axes, "grid.search", "set",
                 "a grid declares either `axes` (grid search) or `search` (Optuna), not both")
        _require(cfg.grid.search.metric.startswith(("val/", "train/", "compute/")),
                 "grid.search.metric", cfg.grid.search.metric,
                 "must be a reported metric such as val/pass_at_1 or val/creativity_index")
        _require(cfg.grid.search.num_samples >= 1, "grid.search.num_samples",
                 cfg.grid.search.num_samples, "must be >= 1")


def _check_plugins(cfg: Config, registry) -> None:
    from core.errors import UnknownPluginError
    for kind, key, name in (("datasets", "data.dataset", cfg.data.dataset),
                            ("rewards", "reward.name", cfg.reward.name),
                            ("curricula", "curriculum.name", cfg.curriculum.name)):
        try:
            registry.get(kind, name)
        except UnknownPluginError as exc:
            raise ConfigError(key, name, f"no {kind} plugin of that name",
                              allowed=exc.valid) from exc
    spec = registry.get("datasets", cfg.data.dataset)
    for key in ("domains", "eval_domains", "sft_domains"):
        chosen = getattr(cfg.data, key)
        _require(chosen is None or (bool(chosen) and len(set(chosen)) == len(chosen)), f"data.{key}",
                 None if chosen is None else list(chosen),
                 "must be a non-empty list without repeats" + ("" if key == "domains" else
                                                                ", or null for data.domains"))
        for i, domain in enumerate(chosen or ()):
            _require(domain in spec.domains, f"data.{key}.{i}", domain,
                     f"not a domain of dataset {spec.name!r}", allowed=spec.domains)
    for key, value in data_options(cfg).items():
        _require(key in spec.options, f"data.{key}", value,
                 f"not used by dataset {spec.name!r}", allowed=list(spec.options) or ["(none)"])
    reward = registry.get("rewards", cfg.reward.name)
    if reward.kind == "learned":
        _require(cfg.reward.rm.size in cfg.ladder.sizes, "reward.rm.size", cfg.reward.rm.size,
                 f"not a size of ladder {cfg.ladder.name!r}", allowed=list(cfg.ladder.sizes))
        gold = registry.get("rewards", cfg.reward.rm.gold) if cfg.reward.rm.gold in registry.names("rewards") else None
        _require(gold is not None and gold.kind == "rule", "reward.rm.gold", cfg.reward.rm.gold,
                 "the gold reward must be a rule reward plugin",
                 allowed=[e.spec.name for e in registry.entries("rewards") if e.spec.kind == "rule"])
        _require(cfg.reward.rm.d_rm >= 2 and cfg.reward.rm.n_eval_pairs >= 2, "reward.rm.d_rm",
                 cfg.reward.rm.d_rm, "D_RM and reward.rm.n_eval_pairs must be >= 2")
        reward = gold     # the dataset must suit the gold verifier
    if reward.data_sources and spec.data_sources:
        _require(any(d.startswith(r) for d in spec.data_sources for r in reward.data_sources),
                 "reward.name", cfg.reward.name,
                 f"it scores data sources {', '.join(reward.data_sources)}, but dataset {spec.name!r} "
                 f"yields {', '.join(spec.data_sources)}",
                 allowed=[r.name for r in (e.spec for e in registry.entries("rewards"))
                          if not r.data_sources or any(d.startswith(p) for d in spec.data_sources
                                                       for p in r.data_sources)])
    _require(cfg.data.d_sft == 0 or spec.worked_examples or cfg.data.sft_source is not None,
             "data.d_sft", cfg.data.d_sft,
             f"dataset {spec.name!r} has no worked examples to warm-start from; set data.d_sft=0, "
             "or synthesise them: data.sft_source={teacher: <size, folder or hub id>}")
    if cfg.data.sft_source is not None:
        _check_sft_source(cfg)


def _check_sft_source(cfg: Config) -> None:
    src = cfg.data.sft_source
    _require(bool(src.teacher.strip()), "data.sft_source.teacher", src.teacher,
             "a ladder size, a checkpoint folder or a hub id", allowed=list(cfg.ladder.sizes))
    for key in ("k", "cap", "max_new_tokens", "prompts"):
        value = getattr(src, key)
        _require(value is None or value >= 1, f"data.sft_source.{key}", value, "must be >= 1")
    _require(src.temperature > 0, "data.sft_source.temperature", src.temperature, "must be > 0")
    _require(0 < src.top_p <= 1, "data.sft_source.top_p", src.top_p, "must be in (0, 1]")


def domains_for(cfg: Config, role: str) -> tuple[str, ...]:
    """The domains a selection draws from: ``data.eval_domains`` for eval prompts,
    ``data.sft_domains`` for SFT examples (and the prompts a teacher answers), each defaulting
    to ``data.domains`` (the RL pool's)."""
    own = {"eval": cfg.data.eval_domains, "sft": cfg.data.sft_domains}.get(role)
    return own or cfg.data.domains


def data_options(cfg: Config) -> dict[str, Any]:
    """The optional ``data.*`` keys that are set (passed to the dataset factory)."""
    opts = {"path": cfg.data.path, "sources": cfg.data.sources, "skip_bad_rows": cfg.data.skip_bad_rows,
            "balance_eval": cfg.data.balance_eval, "sft_noise": cfg.data.sft_noise}
    return {k: v for k, v in opts.items() if v not in (None, (), False)}


TRACKING_SCHEMES = ("sqlite", "http", "https", "postgresql", "mysql", "mssql", "databricks")


def _check_tracking(cfg: Config) -> None:
    """An MLflow store MLflow 3 accepts, with a writable folder for a SQLite file."""
    import os
    uri = cfg.tracking.tracking_uri or os.environ.get("MLFLOW_TRACKING_URI")
    if not uri:
        return
    key = "tracking.tracking_uri" if cfg.tracking.tracking_uri else "$MLFLOW_TRACKING_URI"
    scheme = uri.split("://", 1)[0].split("+", 1)[0] if "://" in uri else ""
    _require(scheme in TRACKING_SCHEMES, key, uri,
             "not a tracking store MLflow 3 accepts (a ./mlruns file store is refused)",
             allowed=["sqlite:////abs/path/mlflow.db", "http(s)://host:port",
                      "postgresql://...", "mysql://...", "mssql://...", "databricks"])
    if scheme == "sqlite":
        path = Path(uri[len("sqlite:///"):]) if uri.startswith("sqlite:///") else None
        _require(path is not None and path.name not in ("", "."), key, uri,
                 "a SQLite store is sqlite:///<file>: sqlite:////abs/path/mlflow.db")
        folder = path.resolve().parent
        while not folder.exists() and folder != folder.parent:
            folder = folder.parent           # the nearest folder that exists must be writable
        _require(os.access(folder, os.W_OK), key, uri, f"{folder} is not writable")


def _check_numbers(cfg: Config) -> None:
    positive = {"data.d_rl": cfg.data.d_rl, "data.n_eval": cfg.data.n_eval,
                "rl.prompts_per_step": cfg.rl.prompts_per_step,
                "rl.max_new_tokens": cfg.rl.max_new_tokens, "eval.every": cfg.eval.every,
                "rl.max_prompt_tokens": cfg.rl.max_prompt_tokens,
                "eval.n_samples": cfg.eval.n_samples, "eval.k_max": cfg.eval.k_max,
                "sft.batch_size": cfg.sft.batch_size}
    for key, value in positive.items():
        _require(value >= 1, key, value, "must be >= 1")
    for key, value in {"sft.steps": cfg.sft.steps, "rl.warmup_steps": cfg.rl.warmup_steps,
                       "data.d_sft": cfg.data.d_sft}.items():
        _require(value >= 0, key, value, "must be >= 0")
    _require(0 <= cfg.data.sft_noise < 1, "data.sft_noise", cfg.data.sft_noise,
             "must be in [0, 1): the share of worked examples with a slip")
    _require(cfg.rl.steps >= 1, "rl.steps", cfg.rl.steps, "must be >= 1 (a trial trains at least one step)")
    budgets = cfg.rl.max_flops if isinstance(cfg.rl.max_flops, dict) else {"": cfg.rl.max_flops}
    for size, budget in budgets.items():
        key = f"rl.max_flops.{size}" if size else "rl.max_flops"
        _require(budget is None or budget > 0, key, budget, "must be > 0, or null to train rl.steps steps")
        _require(not size or size in cfg.ladder.sizes, key, budget,
                 "a budget per size must name a size of the ladder", allowed=list(cfg.ladder.sizes))
    _require(not isinstance(cfg.rl.max_flops, dict) or cfg.model in cfg.rl.max_flops,
             "rl.max_flops", cfg.rl.max_flops, f"has no budget for model {cfg.model!r}")
    _require(not isinstance(cfg.rl.max_flops, dict) or "model" in cfg.grid.axes,
             "rl.max_flops", cfg.rl.max_flops, "a budget per size needs `model` as a grid axis "
             "(grid.axes.model); with one size give one number")
    for key, value in {"seed": cfg.seed, "data.seed": cfg.data.seed}.items():
        _require(0 <= value < 2**32, key, value, "must be in [0, 2^32) (torch and numpy seeds)")
    _check_tracking(cfg)
    for key, value in {"rl.max_grad_norm": cfg.rl.max_grad_norm,
                       "estimate.peak_tflops": cfg.estimate.peak_tflops}.items():
        _require(value > 0, key, value, "must be > 0")
    _require(0 < cfg.estimate.mfu <= 1, "estimate.mfu", cfg.estimate.mfu, "must be in (0, 1]")
    _require(0 < cfg.estimate.response_fill <= 1, "estimate.response_fill",
             cfg.estimate.response_fill, "must be in (0, 1]")
    lrs = [("rl.lr", "rl_lr", cfg.rl_lr)] + ([("sft.lr", "sft_lr", cfg.sft_lr)]
                                            if cfg.data.d_sft > 0 else [])
    for key, size_key, value in lrs:
        _require(value is not None, key, None, f"set {key} or ladder.sizes.{cfg.model}.{size_key}")
        _require(value > 0, key, value, "must be > 0")
    _require(cfg.rl.group_size >= 2, "rl.group_size", cfg.rl.group_size,
             "GRPO needs at least 2 samples per prompt (advantages are group-relative)")
    _require(cfg.eval.k_max <= cfg.eval.n_samples, "eval.k_max", cfg.eval.k_max,
             f"must be <= eval.n_samples ({cfg.eval.n_samples}): pass@k needs n >= k samples")
    _require(cfg.eval.temperature > 0 or cfg.eval.n_samples == 1, "eval.temperature",
             cfg.eval.temperature, "must be > 0 when eval.n_samples > 1 (greedy samples are "
             "identical, so pass@k would equal pass@1)")
    _require(cfg.rl.temperature > 0, "rl.temperature", cfg.rl.temperature, "must be > 0")
    _require(0 < cfg.rl.top_p <= 1, "rl.top_p", cfg.rl.top_p, "must be in (0, 1]")
    _require(0 < cfg.eval.top_p <= 1, "eval.top_p", cfg.eval.top_p, "must be in (0, 1]")
    _require(0 < cfg.rl.clip_ratio < 1, "rl.clip_ratio", cfg.rl.clip_ratio, "must be in (0, 1)")
    _require(cfg.rl.kl_coef is None or cfg.rl.kl_coef > 0, "rl.kl_coef", cfg.rl.kl_coef,
             "must be > 0, or null to turn the KL term off")
    _require((cfg.data.d_sft == 0) == (cfg.sft.steps == 0), "sft.steps", cfg.sft.steps,
             f"SFT steps and data.d_sft ({cfg.data.d_sft}) must both be 0 (no warm start) "
             "or both be > 0")
