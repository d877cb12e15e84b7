"""The multi-turn environments (``plugins/environments/``) as prompt records: one record is one
episode to play, with the expert's play of it (SFT data, as LMRL-Gym's offline datasets).

Record (Guru-RL-92k's field names, as ``plugins/datasets/synthetic.py``)::

    {"data_source": "env__maze", "ability": "maze",
     "prompt": [{"role": "user", "content": "at 0,0 goal 2,2 walls NW"}],   # first observation
     "reward_model": {"style": "env", "ground_truth": ""},
     "extra_info": {"env": "maze", "seed": 1234, "options": {"level": 2}, "domain": "maze",
                    "difficulty": 2, "split": "train", "index": 0, "max_turns": 16,
                    "expert": [["at 0,0 goal 2,2 walls NW", "E"], ...],
                    "expert_return": -3.0, "expert_success": true, "episode": "..."}}

A trainer plays it as ``env = spec.factory(**options); obs = env.reset(seed, record)``; the
reward is the episode's return. Domains are the environment names, difficulties their
``level`` (1-4). Which split an episode belongs to is a hash of ``(env, seed)``, so train and
eval seeds never meet whatever ``n`` and ``seed``. Where a level has few distinct episodes
(8 hidden objects in twenty_questions level 1, the fixed maze of a level) eval episodes can
equal train episodes in content, as in LMRL-Gym, whose eval games draw from the training
word lists; ``extra_info.episode`` names the hidden episode so that overlap can be measured.
The expert's play is the worked example (``worked_examples``): the local warm start trains on
it multi-turn, with the loss on the expert's turns only (``multiturn.expert_sft_batch``).

``sft_noise`` (``data.sft_noise``, default 0): a noisy teacher, as the synthetic tasks' slipped
digits. At each turn the teacher slips with that probability: it plays, instead of the
expert's move, another action the expert played in the same episode (drawn from the clean
play's actions, seeded per episode; a maze move in another direction, textnav's ``open
drawer`` again), and the expert re-plans from wherever the slip left it. ``extra_info.expert``
is then this noisy play (what SFT imitates), with ``expert_return`` / ``expert_success`` its
own, ``slips`` how many turns slipped and ``clean_return`` the expert's. A warm start on it
learns the task's function with the slips' noise, so RL has something to sharpen; an exact
expert's copy leaves RL nothing (the demo's and the curriculum grid's lesson).
"""
from __future__ import annotations

import hashlib
import importlib
import pkgutil
import random
from collections.abc import Sequence

from core.hookspecs import hookimpl
from core.specs import DatasetSpec

SOURCE_PREFIX = "env__"
EVAL_FRACTION = 0.15
LEVELS = (1, 2, 3, 4)
SPLITS = ("train", "eval")


def builtin_env_names() -> tuple[str, ...]:
    """The built-in environments' names, read from their modules' hooks (no registry)."""
    import plugins.environments as pkg
    names: list[str] = []
    for info in sorted(pkgutil.iter_modules(pkg.__path__), key=lambda i: i.name):
        if not info.name.startswith("_"):
            module = importlib.import_module(f"plugins.environments.{info.name}")
            names += [spec.name for spec in module.agentic_rl_environments()]
    return tuple(sorted(names))


def split_of(env: str, seed: int) -> str:
    h = int.from_bytes(hashlib.sha1(f"{env}/{seed}".encode()).digest()[:4], "big") / 2**32
    return "eval" if h < EVAL_FRACTION else "train"


def noisy_teacher(spec, clean_actions: list[str], sft_noise: float, key: str):
    """The expert, slipping at each turn with probability ``sft_noise`` to another action of its
    own clean play (seeded by ``key``); ``policy.slips`` counts the slips."""
    rng = random.Random(f"slip/{key}")
    vocab = sorted(set(clean_actions))

    def policy(env, _obs):
        action = spec.expert(env)
        others = [a for a in vocab if a != action]
        if others and rng.random() < sft_noise:
            policy.slips += 1
            return rng.choice(others)
        return action
    policy.slips = 0
    return policy


def make_record(spec, env, level: int, seed: int, split: str, index: int, sft_noise: float = 0.0) -> dict:
    from plugins.environments import run_episode

    traj = run_episode(env, seed, lambda e, _obs: spec.expert(e), {"level": level})
    noise = {}
    if sft_noise:
        clean = traj
        teacher = noisy_teacher(spec, [a for _o, a in clean.steps], sft_noise, f"{spec.name}/{level}/{seed}")
        traj = run_episode(env, seed, teacher, {"level": level})
        noise = {"sft_noise": sft_noise, "slips": teacher.slips, "clean_return": clean.ret}
    return {
        "data_source": SOURCE_PREFIX + spec.name,
        "ability": spec.name,
        "prompt": [{"role": "user", "content": traj.steps[0][0]}],
        "reward_model": {"style": "env", "ground_truth": ""},
        "extra_info": {"env": spec.name, "seed": seed, "options": {"level": level},
                       "domain": spec.name, "difficulty": level, "split": split, "index": index,
                       "max_turns": env.max_turns, "expert": [list(s) for s in traj.steps],
                       "expert_return": traj.ret, "expert_success": traj.success,
                       "episode": env.episode_key, **noise},
    }


def load(split: str, n: int, domains: Sequence[str] | None = None,
         difficulties: Sequence[int] = LEVELS, seed: int = 0, sft_noise: float = 0.0) -> list[dict]:
    """Dataset-plugin factory: ``n`` records of ``split`` spread evenly over ``domains`` x
    ``difficulties`` (levels an environment lacks are skipped), seeded, distinct seeds; with
    ``sft_noise`` the worked play is a noisy teacher's (module docstring)."""
    from core.plugins import registry

    if split not in SPLITS:
        raise ValueError(f"split {split!r}: allowed {', '.join(SPLITS)}")
    reg = registry()
    specs = [reg.get("environments", d) for d in (domains or builtin_env_names())]
    cells = [(s, lv) for s in specs for lv in difficulties if lv in (s.levels or (lv,))]
    if not cells:
        raise ValueError(f"no environment of {[s.name for s in specs]} has a level in {list(difficulties)}")
    rng = random.Random(f"{seed}/{split}")
    envs, used, records = {}, set(), []
    try:
        for i in range(n):
            spec, level = cells[i % len(cells)]
            ep_seed = rng.randrange(2**31)
            while split_of(spec.name, ep_seed) != split or (spec.name, level, ep_seed) in used:
                ep_seed = rng.randrange(2**31)
            used.add((spec.name, level, ep_seed))
            if (spec.name, level) not in envs:
                envs[spec.name, level] = spec.factory(level=level)
            records.append(make_record(spec, envs[spec.name, level], level, ep_seed, split, i, sft_noise))
    finally:
        for env in envs.values():
            env.close()
    rng.shuffle(records)
    return records


@hookimpl
def agentic_rl_datasets():
    yield DatasetSpec(
        name="environments", factory=load, domains=builtin_env_names(), splits=SPLITS,
        data_sources=(SOURCE_PREFIX,), worked_examples=True, options=("sft_noise",),
        description="multi-turn environment episodes (LMRL-Gym tasks) with expert play, levels 1-4")
