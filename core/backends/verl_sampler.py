"""Online curricula on verl 0.9.1's V1 trainer (sync mode): a replay buffer and a dataset.

**Why two classes.** In the V1 trainer a replay buffer does not choose prompts: every prompt
comes from the train dataloader (``_fetch_one_gen_batch``), is dispatched to the agent loops,
and its G trajectories land in TransferQueue (TQ) with their rewards; the replay buffer
(``trainer.v1.sampler.custom_sampler``) picks finished groups from TQ and may ask for more
prompts through ``refill_fn(n)``. A curriculum that chooses prompts therefore needs the dataset
as well; both classes live here and share this process's ``_LINK`` (verl builds the trainer,
its dataset and its replay buffer in the TaskRunner process). Load both by package name
(``pkg://core.backends.verl_sampler``): a file path would load two copies of the module.

**What verl calls, with what** (``verl/trainer/ppo/v1/trainer_base.py``, ``replay_buffer.py``):

1. ``PPOTrainer.__init__`` -> ``_build_replay_buffer``: ``CurriculumSampler(trainer_mode,
   trainer_config=trainer.v1.<mode>, max_off_policy_threshold, max_off_policy_strategy,
   sampler_kwargs=trainer.v1.sampler.sampler_kwargs, refill_fn=trainer._add_prompts_to_generate)``
   (a custom sampler gets no DAPO arguments). ``sampler_kwargs``: ``curriculum`` (plugin name),
   ``options`` (its options), ``seed``.
2. ``init`` -> ``_init_dataloader`` -> ``CurriculumDataset(data_files, tokenizer, config=data,
   processor, max_samples)`` for ``data.train_files`` and again for ``data.val_files`` (the
   class is not told which; the one whose files are ``data.train_files`` is the train one, the
   other behaves as ``RLHFDataset``). The train one builds the curriculum over its rows
   (``data_source``, ``prompt``, ``ability``, ``extra_info``; ``extra_info.index`` unique).
3. Step ``g`` (1-based; our step ``t = g - 1``): ``prepare_step`` fetches ``train_batch_size``
   rows, ``gen_batch_size`` (= 1) at a time: ``dataset[i]`` ignores ``i``; the step's first
   fetch opens ``StepRounds(curriculum, t, train_batch_size)`` (``core/rounds.py``) and
   queues ``first()``, each fetch returns the next queued record's row.
   The trainer gives each row a uid and dispatches it; the reward loop writes trajectories
   ``{uid}_{session}_{i}`` with ``rm_scores`` (the reward, summed over tokens) and
   ``extra_fields.reward_extra_info`` (our reward bridge's ``acc`` and ``prompt_index`` =
   ``extra_info.index``), and the uid's status becomes ``finished`` (or ``failure``).
4. ``_step_once`` -> ``sample(global_steps=g, partition_id="train", batch_size)``: we poll TQ
   (``_sync_metadata_from_transfer_queue``) until no prompt is pending or running, read the
   round's groups (``tq.kv_batch_get(select_fields=["rm_scores", "extra_fields"])``; one
   ``Outcome(reward=sum(rm_scores), correct=acc >= 0.5)`` per session's last output), order
   them as served and call ``rounds.add``; refill records are queued and ``refill_fn(n)`` makes
   the trainer fetch and dispatch exactly those, then we poll again. At the end
   ``rounds.finish()`` updates the curriculum, the groups not chosen are cleared from TQ
   (``_clear_groups``) and ``_materialize_batch(chosen uids)`` is returned with the metrics
   below. ``partition_id="val"`` goes to ``ReplayBuffer.sample`` unchanged.
5. ``_save_checkpoint`` saves ``train_dataloader.state_dict()``: torchdata's
   ``StatefulDataLoader`` (no workers) stores ``dataset.state_dict()`` = our step and the
   curriculum's state; on resume it is given back to ``dataset.load_state_dict`` when the
   iterator is rebuilt, before the resumed step's first fetch.

**Metrics** (returned by ``sample``, logged by verl every step): ``curriculum/<stat>`` for
``StepRounds.stats`` (``filtered_groups``, ``extra_prompts``, ...), ``curriculum/failed_groups``,
``curriculum/extra_prompt_tokens`` and ``curriculum/extra_response_tokens`` (tokens of the
trajectories rolled out but not trained on, for ``compute/flops_rollout``), and
``curriculum/<key>`` for the curriculum's ``metrics()``.

**verl config** for an online curriculum (``curriculum.online``): the train parquet holds the
RL pool once (one row per record, ``extra_info.index`` = its row), and::

    data.custom_cls.{path=pkg://core.backends.verl_sampler,name=CurriculumDataset}
    trainer.v1.sampler.custom_sampler.{path=pkg://core.backends.verl_sampler,name=CurriculumSampler}
    +trainer.v1.sampler.sampler_kwargs={curriculum: <name>, options: {...}, seed: <seed>}
    data.gen_batch_size=1  data.dataloader_num_workers=0  trainer.v1.trainer_mode=sync
    trainer.total_epochs=<rl.steps>   # verl stops at epoch total_epochs of len(pool) // batch steps

**What it cannot do.** Sync trainer only (async modes fetch prompts for later steps before the
curriculum hears this one), ``parameter_sync_step`` 1, ``data.dataloader_num_workers=0``,
``data.gen_batch_size=1``; rounds run one after another (verl's own sync DAPO dispatches refills
while a round still runs); rewards must be in TQ when sampling (a rule or custom reward
function, or ``reward.reward_model.enable_resource_pool=true``); a failed group with no
trajectory is dropped unseen by the curriculum and not refilled; it ignores
``algorithm.filter_groups`` (leave it off: our ``online_filter`` does the filtering).
"""
from __future__ import annotations

import time
from collections import deque
from typing import Any

from torch.utils.data import get_worker_info
from verl.trainer.ppo.v1 import replay_buffer as _rb
from verl.utils.dataset.rl_dataset import RLHFDataset

from core.protocols import Outcome
from core.rounds import StepRounds

_CONFIG: dict | None = None     # set by CurriculumSampler, read by the train CurriculumDataset
_LINK: _Link | None = None      # built by the train CurriculumDataset
TRAIN = "train"


def _plain(value) -> Any:
    from omegaconf import DictConfig, ListConfig, OmegaConf
    if isinstance(value, (DictConfig, ListConfig)):
        return OmegaConf.to_container(value, resolve=True)
    return value


def _files(files) -> list[str]:
    files = _plain(files)
    return [str(f) for f in (files if isinstance(files, (list, tuple)) else [files])]


class _Link:
    """The curriculum, its pool and the step's serving queue, shared by dataset and sampler."""

    def __init__(self, curriculum, records: list[dict], size: int) -> None:
        self.curriculum, self.records, self.size = curriculum, records, size
        self.pos_of_index = {int(r["extra_info"]["index"]): p for p, r in enumerate(records)}
        self.step, self.rounds = 0, None
        self.queue: deque[int] = deque()
        self.served: list[int] = []       # the current round's positions, in serving order

    def serve(self, records: list[dict]) -> None:
        self.served = [self.pos_of_index[int(r["extra_info"]["index"])] for r in records]
        self.queue.extend(self.served)

    def next_position(self) -> int:
        if self.rounds is None:
            self.rounds = StepRounds(self.curriculum, self.step, self.size)
            self.serve(self.rounds.first())
        if not self.queue:
            raise RuntimeError(f"verl fetched more prompts at step {self.step} than the curriculum "
                               "served (async warm-up or failed-group refill?); use the sync trainer "
                               "without trainer.v1.sampler.sync_refill_failed_groups")
        return self.queue.popleft()

    def state_dict(self) -> dict:
        return {"step": self.step, "curriculum": self.curriculum.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        self.step, self.rounds, self.queue = int(state["step"]), None, deque()
        self.curriculum.load_state_dict(state["curriculum"])


class CurriculumDataset(RLHFDataset):
    """``data.custom_cls``: the train rows in the order our curriculum serves them."""

    def __init__(self, data_files, tokenizer, config, processor=None, max_samples: int = -1) -> None:
        super().__init__(data_files, tokenizer, config, processor=processor, max_samples=max_samples)
        self.is_train = _files(data_files) == _files(config.train_files)
        if self.is_train:
            self._link()

    def _link(self) -> None:
        global _LINK
        if _CONFIG is None:
            raise RuntimeError("CurriculumDataset needs trainer.v1.sampler.custom_sampler = "
                               "pkg://core.backends.verl_sampler / CurriculumSampler")
        for key, want in (("gen_batch_size", 1), ("dataloader_num_workers", 0)):
            if self.config.get(key) != want:
                raise ValueError(f"CurriculumDataset: data.{key} must be {want}, got {self.config.get(key)!r}")
        from core.plugins import registry
        cols = [c for c in ("data_source", "prompt", "ability", "extra_info") if c in self.dataframe.column_names]
        records = self.dataframe.select_columns(cols).to_list()
        indices = [(r.get("extra_info") or {}).get("index") for r in records]
        if None in indices or len(set(indices)) != len(indices):
            raise ValueError("CurriculumDataset: every train row needs a unique extra_info.index "
                             "(write the RL pool once, one row per record)")
        factory = registry().get("curricula", _CONFIG["curriculum"]).factory
        curriculum = factory(records, seed=_CONFIG["seed"], **_CONFIG["options"])
        _LINK = _Link(curriculum, records, int(self.config.train_batch_size))

    def __getitem__(self, item):
        if not self.is_train:
            return super().__getitem__(item)
        if get_worker_info() is not None:
            raise RuntimeError("CurriculumDataset: set data.dataloader_num_workers=0")
        return super().__getitem__(_LINK.next_position())

    def state_dict(self) -> dict:
        return _LINK.state_dict() if self.is_train else {}

    def load_state_dict(self, state: dict) -> None:
        if self.is_train and state:
            _LINK.load_state_dict(state)


class CurriculumSampler(_rb.ReplayBuffer):
    """``trainer.v1.sampler.custom_sampler``: rounds of our curriculum over TransferQueue."""

    def __init__(self, trainer_mode: str, trainer_config, max_off_policy_threshold,
                 max_off_policy_strategy: str, sampler_kwargs, **kwargs) -> None:
        global _CONFIG, _LINK
        if trainer_mode != "sync":
            raise ValueError(f"CurriculumSampler: trainer.v1.trainer_mode must be 'sync', got {trainer_mode!r}")
        if (_plain(trainer_config) or {}).get("parameter_sync_step", 1) != 1:
            raise ValueError("CurriculumSampler: trainer.v1.sync.parameter_sync_step must be 1")
        super().__init__(trainer_mode, trainer_config, max_off_policy_threshold,
                         max_off_policy_strategy, sampler_kwargs, **kwargs)
        cfg = dict(_plain(sampler_kwargs) or {})
        unknown = set(cfg) - {"curriculum", "options", "seed"}
        if "curriculum" not in cfg or unknown:
            raise ValueError("CurriculumSampler: trainer.v1.sampler.sampler_kwargs takes curriculum "
                             f"(required), options, seed; got {sorted(cfg)}")
        _CONFIG = {"curriculum": cfg["curriculum"], "options": dict(cfg.get("options") or {}),
                   "seed": int(cfg.get("seed", 0))}
        _LINK = None

    def sample(self, global_steps: int, partition_id: str, batch_size: int):
        if partition_id != TRAIN:
            return super().sample(global_steps, partition_id, batch_size)
        link = _LINK
        if link is None or link.rounds is None or link.step != global_steps - 1 or batch_size != link.size:
            raise RuntimeError(f"CurriculumSampler: step {global_steps - 1} (batch {batch_size}) was not "
                               f"served by CurriculumDataset (its step {getattr(link, 'step', None)})")
        judged: set[str] = set()
        round_uids: list[list[str]] = []
        failed = 0
        while True:
            new = self._wait_round(judged)
            judged |= new
            uids, records, outcomes, no_traj = self._read_round(link, new)
            failed += no_traj
            round_uids.append(uids)
            more = link.rounds.add(records, outcomes)
            if not more:
                break
            link.serve(more)
            self.refill_fn(len(more))
        chosen = [round_uids[r][i] for r, i in link.rounds.finish()]
        rest = judged - set(chosen)
        metrics = {f"curriculum/{k}": float(v) for k, v in link.rounds.stats.items()}
        metrics.update(self._token_metrics(rest), **{"curriculum/failed_groups": float(failed)})
        extra = getattr(link.curriculum, "metrics", dict)()
        metrics.update({f"curriculum/{k}": float(v) for k, v in extra.items()})
        self._clear_groups(TRAIN, rest)
        batch = self._materialize_batch(TRAIN, chosen, dict(self.partitions[TRAIN]))
        link.step, link.rounds = link.step + 1, None
        return batch, metrics

    def _wait_round(self, judged: set[str]) -> set[str]:
        """The terminal groups not judged yet, once nothing is pending or running."""
        last = time.time()
        while True:
            self._sync_metadata_from_transfer_queue()
            inflight = self.pending_keys[TRAIN] | self.running_keys[TRAIN]
            new = (self.finished_keys[TRAIN] | self.failure_keys[TRAIN]) - judged
            if not inflight:
                if not new:
                    raise RuntimeError("CurriculumSampler: no prompt group of this round is in TransferQueue")
                return new
            last = self._wait_for_next_poll(TRAIN, last)

    def _read_round(self, link: _Link, uids: set[str]):
        """(uids, records, outcomes, groups without trajectories), in serving order."""
        last: dict[tuple[str, str], tuple[int, str]] = {}
        for key in self.partitions[TRAIN]:
            uid, session, index = key.split("_")
            if uid in uids and int(index) >= last.get((uid, session), (-1, ""))[0]:
                last[(uid, session)] = (int(index), key)
        keys = sorted(k for _, k in last.values())
        fields = ["rm_scores", "extra_fields"]
        data = _rb.tq.kv_batch_get(keys=keys, partition_id=TRAIN, select_fields=fields) if keys \
            else {f: [] for f in fields}
        samples: dict[str, list[tuple[float, bool]]] = {}
        pos_of: dict[str, int] = {}
        for key, scores, extra in zip(keys, list(data["rm_scores"]), list(data["extra_fields"]), strict=True):
            info = (getattr(extra, "data", extra) or {}).get("reward_extra_info", {})
            if "prompt_index" not in info:
                raise RuntimeError("CurriculumSampler: reward_extra_info has no prompt_index; use the "
                                   "project's reward bridge (core/verl_reward.py)")
            reward = float(scores.sum().item())
            uid = key.split("_")[0]
            pos_of[uid] = link.pos_of_index[int(info["prompt_index"])]
            samples.setdefault(uid, []).append((reward, float(info.get("acc", reward)) >= 0.5))
        rank = {p: i for i, p in reversed(list(enumerate(link.served)))}
        order = sorted(samples, key=lambda u: (rank.get(pos_of[u], len(rank)), u))
        outcomes = [Outcome(i, reward, correct, {"uid": u})
                    for i, u in enumerate(order) for reward, correct in samples[u]]
        return order, [link.records[pos_of[u]] for u in order], outcomes, len(uids) - len(order)

    def _token_metrics(self, uids: set[str]) -> dict[str, float]:
        tags = [tag for key, tag in self.partitions[TRAIN].items() if key.split("_")[0] in uids]
        return {"curriculum/extra_prompt_tokens": float(sum(t.get("prompt_len", 0) for t in tags)),
                "curriculum/extra_response_tokens": float(sum(t.get("response_len", 0) for t in tags))}
