"""Grid driver: the grid's axes as a Ray Tune ``grid_search``, one trial per point.

``ray.init()`` joins the cluster named by ``$RAY_ADDRESS`` (so ``ray job submit -- python -m
core.tune grid=...`` works) and starts a local Ray otherwise (with the logical resources the
trials' backend asks for: verl on the CPU books logical GPUs). Per-trial resources and
concurrency come from the trial's backend record (``core/backends``). Trials are plain
functions that call ``tune.report`` with every step's metrics and a ``tune.Checkpoint`` at each
evaluation; ``FailureConfig`` retries a crashed trial from its last checkpoint, and
``resume=true`` continues the newest run of the grid with ``Tuner.restore``.

MLflow logging happens in the driver (``ProgressAndMlflow``, the single writer of the store):
every step of a trial is logged exactly once, however often the trial restarts: a restarted
trial recomputes the steps after its checkpoint, and the driver logs only steps past the last
one its run holds (read back from MLflow after a driver restart). The parent run ends
FINISHED, FAILED or KILLED as the grid did.
"""
from __future__ import annotations

import json
import os
import time
from pathlib import Path

from core import schema
from core.backends import get_backend
from core.config import Config, points, with_values
from core.errors import UserError
from core.layout import run_dir, trial_key
from core.tracking import STEP_METRIC, Tracker, experiment_name, tracking_uri
from core.trial import run_trial

FAULT_ENV = "ARL_FAULT_KILL_AT_STEP"   # testing hook: kill each trial once after this step
PER_PROMPT = "eval/per_prompt_pass_at_1"   # a trial's per-prompt pass@1 at an eval step (a list)
PER_PROMPT_DOMAIN = "eval/per_prompt_domain"   # the domain of each of those prompts
USER_ERROR = "user_error.txt"          # in a trial folder: the trial failed on bad input


def train_fn(config: dict, raw: dict, out: str, fault_step: int | None) -> None:
    """The Tune trainable: one trial of the grid (``config`` holds this point's axis values)."""
    import logging

    from ray import tune
    logging.getLogger("ray.train").setLevel(logging.WARNING)   # one line per checkpoint
    config = point_values(config)
    cfg = schema.build(Config, with_values(raw, config))
    workdir = Path(out) / "trials" / trial_key(config)
    checkpoint = tune.get_checkpoint()
    resume = Path(checkpoint.to_directory()) if checkpoint else None
    _not_again(workdir)
    try:
        for metrics, ckpt in run_trial(cfg, workdir, resume_from=resume):
            _report(metrics, ckpt, workdir, fault_step)
    except UserError as exc:   # bad input fails the same way again: Tune's retries must not rerun it
        workdir.mkdir(parents=True, exist_ok=True)
        (workdir / USER_ERROR).write_text(str(exc))
        raise


def _not_again(workdir: Path) -> None:
    """A trial that failed on bad input fails at once when Tune retries it, with the same message."""
    if (workdir / USER_ERROR).exists():
        raise UserError((workdir / USER_ERROR).read_text() + " (not retried: the input is wrong)")


def _report(metrics: dict, ckpt: Path | None, workdir: Path, fault_step: int | None) -> None:
    from ray import tune
    metrics = {**metrics, "trial_dir": str(workdir)}
    tune.report(metrics, checkpoint=tune.Checkpoint.from_directory(ckpt) if ckpt else None)
    marker = workdir / "fault_injected"
    if fault_step is not None and metrics["step"] == fault_step and not marker.exists():
        marker.write_text("killed once by the fault-injection hook\n")
        os._exit(1)   # an abrupt death, as an OOM kill or a lost node would be


class _ProgressAndMlflow:
    """Logs each trial's steps to its MLflow child run, once each, and prints progress (a Ray
    Tune callback: ``_make_callback`` mixes it into ``tune.Callback``)."""

    def __init__(self, raw: dict, uri: str, experiment: str, parent_id: str,
                 total_steps: int) -> None:
        self.raw, self.uri, self.experiment = raw, uri, experiment
        self.parent_id, self.total_steps = parent_id, total_steps
        self.runs: dict[str, str] = {}
        self.last_logged: dict[str, int] = {}
        self.t0 = time.time()
        self._tracker = None

    def __getstate__(self):   # Tuner.restore unpickles callbacks; client and MLflow-derived
        return {**self.__dict__, "_tracker": None, "t0": None, "last_logged": {}}   # state are rebuilt

    @property
    def tracker(self) -> Tracker:
        if self._tracker is None:
            self._tracker = Tracker(self.uri, self.experiment)
        return self._tracker

    def _run(self, trial) -> str:
        if trial.trial_id not in self.runs:
            values = point_values(trial.config)
            cfg = schema.build(Config, with_values(self.raw, values))
            self.runs[trial.trial_id] = self.tracker.child(cfg, values, self.parent_id,
                                                           trial_key(values))
        return self.runs[trial.trial_id]

    def on_trial_start(self, iteration, trials, trial, **info):
        self._run(trial)

    def on_trial_result(self, iteration, trials, trial, result, **info):
        run_id, step = self._run(trial), int(result["step"])
        if run_id not in self.last_logged:       # after a driver restart: ask MLflow
            self.last_logged[run_id] = self.tracker.last_step(run_id)
        if step <= self.last_logged[run_id]:
            return     # a restarted trial recomputing a step its run already holds
        self.tracker.log_step(run_id, result)
        self.last_logged[run_id] = step
        if result.get(PER_PROMPT) is not None:   # the report's gains with intervals read it
            evals = {"step": step, "pass_at_1": list(result[PER_PROMPT])}
            if result.get(PER_PROMPT_DOMAIN) is not None:      # per-domain gains (transfer)
                evals["domains"] = list(result[PER_PROMPT_DOMAIN])
            self.tracker.client.log_dict(run_id, evals, f"evals/step_{step:06d}.json")
        if step == 0:
            self.tracker.client.set_tag(run_id, "trial_dir", result["trial_dir"])
        if result.get("checkpoint_dir_name"):
            self.tracker.client.set_tag(run_id, "checkpoints", trial.storage.trial_fs_path)
        self._progress(trial, result)

    def _progress(self, trial, result) -> None:
        done = sum(s + 1 for s in self.last_logged.values())
        self.t0 = self.t0 or time.time()
        if "val/pass_at_1" not in result:
            return
        rate = (time.time() - self.t0) / max(1, done)
        eta = rate * max(0, self.total_steps - done)
        # the first steps carry the SFT warm-starts: no ETA until 10% are done
        eta_txt = (f"grid ETA {eta:.0f}s" if done >= 0.1 * self.total_steps
                   else "grid ETA: after 10% of steps")
        label = ", ".join(f"{k}={v}" for k, v in point_values(trial.config).items()) or "trial"
        print(f"[{done}/{self.total_steps} steps] {label}: step {int(result['step'])} "
              f"pass@1 {result['val/pass_at_1']:.3f} creativity "
              f"{result['val/creativity_index']:.3f}  ({eta_txt})", flush=True)

    def on_trial_complete(self, iteration, trials, trial, **info):
        self.tracker.finish(self._run(trial))

    def on_trial_error(self, iteration, trials, trial, **info):
        self.tracker.finish(self._run(trial), status="FAILED")


def _make_callback():
    from ray import tune
    return type("ProgressAndMlflow", (_ProgressAndMlflow, tune.Callback), {"__module__": __name__})


POINT = "point"   # with grid.include, Tune's one axis: each value is a whole trial's values


def point_values(config: dict) -> dict:
    """A Tune trial config as the trial's axis values (dotted key -> value)."""
    return dict(config[POINT]) if set(config) == {POINT} else dict(config)


def _param_space(cfg: Config):
    from ray import tune
    if cfg.grid.search is None and cfg.grid.include:    # extra points: not a product any more
        return {POINT: tune.grid_search(points(cfg))}, None
    if cfg.grid.search is None:
        return {k: tune.grid_search(list(v)) for k, v in cfg.grid.axes.items()}, None
    from ray.tune.search.optuna import OptunaSearch

    class EvalStepOptuna(OptunaSearch):
        """Optuna hears only the evaluation steps: the others carry no ``val/`` metric."""

        def on_trial_result(self, trial_id, result):
            if self.metric in result:
                super().on_trial_result(trial_id, result)

    # Tune otherwise rejects the non-evaluation steps for lacking the searched metric.
    os.environ["TUNE_DISABLE_STRICT_METRIC_CHECKING"] = "1"
    space = {}
    for key, dim in cfg.grid.search.space.items():
        if dim.type == "int":
            space[key] = tune.randint(int(dim.low), int(dim.high) + 1)
        else:
            space[key] = (tune.loguniform if dim.log else tune.uniform)(dim.low, dim.high)
    return space, EvalStepOptuna(metric=cfg.grid.search.metric, mode=cfg.grid.search.mode)


def check_inputs(trials: list[tuple[dict, Config]]) -> None:
    """Load every distinct data selection of the grid once (fingerprints are memoised per data
    config) and exercise every distinct reward and curriculum on it, so that bad data or a
    plugin that breaks its protocol is reported before any trial starts."""
    from core.data import selection_fingerprint
    from core.plugin_check import check_plugins
    seen = set()
    for _, t in trials:
        selection_fingerprint(t)
        key = json.dumps([schema.to_dict(t.data), schema.to_dict(t.reward), schema.to_dict(t.curriculum),
                          t.rl.prompts_per_step, t.rl.group_size], sort_keys=True, default=str)
        if key not in seen:
            seen.add(key)
            check_plugins(t)
            _check_turn_budget(t)


def _check_turn_budget(t: Config) -> None:
    """Episodes: a policy turn must hold the environment's longest expert action."""
    from core import data
    from core.backends import multiturn
    records = data.select(t, "train")
    if records and multiturn.is_episode(records[0]):
        from transformers import AutoTokenizer

        from core import models
        source = models.model_source(t.size, Path(t.cache_dir).resolve(), seed=t.data.seed)
        multiturn.check_action_budget(t, records, AutoTokenizer.from_pretrained(source))


def start_rm_endpoints(cfg: Config, trials: list[tuple[dict, Config]]) -> str | None:
    """One Serve app per RM size class the grid's learned-RM trials use (and give no URL for);
    returns the base URL to hand the trials, or None when no trial needs one."""
    from core.plugins import registry
    learned = [t for _, t in trials
               if registry().get("rewards", t.reward.name).kind == "learned" and t.reward.rm.url is None]
    if not learned:
        return None
    from serve.app import RMAppArgs, deploy
    from core.rm import checkpoint_root
    port = cfg.reward.rm.port or free_port()
    url = None
    for size in sorted({t.reward.rm.size for t in learned}):
        t = next(t for t in learned if t.reward.rm.size == size)
        root = checkpoint_root(t)
        root.mkdir(parents=True, exist_ok=True)
        res = t.ladder.sizes[size].resources
        score_url = deploy(RMAppArgs(size=size, checkpoint_root=str(root), token=t.reward.rm.token,
                                     max_batch_size=t.reward.rm.max_batch_size, num_gpus=res.gpus),
                           port=port)
        print(f"reward model endpoint for size {size}: {score_url}", flush=True)
        url = f"http://127.0.0.1:{port}"
    return url


def free_port() -> int:
    """A TCP port free on the loopback right now."""
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _start_ray(cfg: Config, trials: list) -> tuple[bool, dict]:
    """Join ``$RAY_ADDRESS`` or start a local Ray; returns (started here, concrete overrides
    for every trial such as ``device=cpu``)."""
    import ray
    backend = get_backend(cfg.backend)
    if ray.is_initialized():
        return False, backend.finalize(cfg, ray.cluster_resources().get("GPU", 0))
    address = os.environ.get("RAY_ADDRESS")
    concrete = {} if address else backend.finalize(cfg, None)
    resolved = [(v, schema.build(Config, with_values(schema.to_dict(t), concrete))) for v, t in trials]
    ray.init(address=address, include_dashboard=False, log_to_driver=True, configure_logging=False,
             **({} if address else backend.ray_init(resolved)))
    if not address:     # this driver owns the local Ray: its processes die with it, kill -9 included
        from core import watchdog
        watchdog.start()
    if address:
        concrete = backend.finalize(cfg, ray.cluster_resources().get("GPU", 0))
    return True, concrete


def run_grid(cfg: Config, trials: list[tuple[dict, Config]]) -> int:
    import ray
    from ray import tune
    check_inputs(trials)  # a bad path, file, row or plugin fails here, before Ray or MLflow start
    uri, experiment = tracking_uri(cfg), experiment_name(cfg)
    tracker = Tracker(uri, experiment)   # a bad store fails here, before any folder exists
    out = run_dir(cfg)
    state_file = out / "grid.json"
    state = json.loads(state_file.read_text()) if state_file.exists() else {}
    parent_id = tracker.parent(cfg, out, state.get("parent_run_id"))
    out.mkdir(parents=True, exist_ok=True)
    state_file.write_text(json.dumps({"parent_run_id": parent_id, "tracking_uri": uri,
                                      "experiment": experiment, "grid": cfg.grid.name}))
    print(f"grid {cfg.grid.name}: {len(trials)} trial(s) -> {out}\n"
          f"mlflow: {uri} experiment {experiment!r} parent run {parent_id}", flush=True)

    # No nag per checkpoint about experiment snapshots (a trial checkpoints at every eval).
    os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")
    started, serving, status, results = False, False, "FAILED", []
    try:
        started, concrete = _start_ray(cfg, trials)
        # Tune runs each trial in its own folder: make the shared cache absolute, or every
        # trial would warm-start (and grade, and train RMs) in a cache of its own
        raw = with_values(schema.to_dict(cfg), {"cache_dir": str(Path(cfg.cache_dir).resolve()),
                                                **concrete})
        rm_url = start_rm_endpoints(cfg, trials)
        if rm_url:
            serving = True
            raw = with_values(raw, {"reward.rm.url": rm_url})
        results = _fit(cfg, trials, raw, out, uri, experiment, parent_id)
        status = _status(results, raw)
    except KeyboardInterrupt:
        status = "KILLED"
        raise
    finally:
        tracker.finish(parent_id, status=status)
        if serving:
            from ray import serve
            serve.shutdown()
        if started:
            ray.shutdown()
    for r in results:
        if r.error:
            print(f"trial failed: {r.error!r}")
    from core.report import write_report
    report = write_report(uri, parent_id, out)
    print(f"\nreport: {report}\nMLflow UI: mlflow ui --backend-store-uri {uri}")
    return 0 if status == "FINISHED" else 1


def _status(results, raw: dict) -> str:
    """FAILED if a trial failed, KILLED if one stopped before its last step (an interrupted
    grid, which ``resume=true`` continues), else FINISHED."""
    if any(r.error for r in results):
        return "FAILED"
    for r in results:
        cfg = schema.build(Config, with_values(raw, point_values(r.config)))
        metrics = r.metrics or {}
        if not metrics.get("done") and int(metrics.get("step", -1)) < cfg.rl.steps:
            return "KILLED"     # neither returned (a compute budget ends early) nor at its end
    return "FINISHED"


def _fit(cfg: Config, trials: list, raw: dict, out: Path, uri: str, experiment: str,
         parent_id: str):
    from ray import tune
    backend = get_backend(cfg.backend)
    fault = os.environ.get(FAULT_ENV)
    trainable = tune.with_parameters(train_fn, raw=raw, out=str(out),
                                     fault_step=int(fault) if fault else None)
    trainable = tune.with_resources(
        trainable, lambda point: backend.resources(schema.build(Config, with_values(raw, point_values(point)))))
    space, search = _param_space(cfg)
    n = cfg.grid.search.num_samples if cfg.grid.search else len(trials)
    total = sum(t.rl.steps + 1 for _, t in trials) if not search else n * (cfg.rl.steps + 1)
    callback = _make_callback()(raw, uri, experiment, parent_id, total)
    path = out / "tune" / cfg.grid.name
    # MLflow holds every metric: Tune's own CSV / JSON / TensorBoard copies would duplicate them
    # (and TensorBoard warns at every eval on the per-prompt lists)
    os.environ.setdefault("TUNE_DISABLE_AUTO_CALLBACK_LOGGERS", "1")
    if cfg.resume and tune.Tuner.can_restore(str(path)):
        print(f"resuming {path}", flush=True)
        tuner = tune.Tuner.restore(str(path), trainable=trainable, resume_unfinished=True,
                                   resume_errored=True)
    else:
        concrete = [(v, schema.build(Config, with_values(raw, v))) for v, _ in trials]
        tuner = tune.Tuner(
            trainable, param_space=space,
            tune_config=tune.TuneConfig(search_alg=search, num_samples=n if search else 1,
                                        max_concurrent_trials=backend.max_concurrent(cfg, concrete)),
            run_config=tune.RunConfig(
                name=cfg.grid.name, storage_path=str(out / "tune"), verbose=0,
                failure_config=tune.FailureConfig(max_failures=2),
                checkpoint_config=tune.CheckpointConfig(num_to_keep=2),
                callbacks=[callback]))
    return list(tuner.fit())
