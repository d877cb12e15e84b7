"""The hooks a plugin may implement. Every hook name carries the ``agentic_rl_`` prefix.

A plugin is a module (or any object) with functions decorated by ``@hookimpl`` whose names
match the specs below. Built-in plugins live under ``plugins/``; third-party packages declare
theirs in their own ``pyproject.toml``::

    [project.entry-points."agentic_rl_scaling.plugins"]
    my_rewards = "my_package.rewards"
"""
from __future__ import annotations

from collections.abc import Iterable

import pluggy

from core.specs import CurriculumSpec, DatasetSpec, EnvironmentSpec, RewardSpec

PROJECT = "agentic_rl_scaling"
ENTRY_POINT_GROUP = "agentic_rl_scaling.plugins"

hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


@hookspec
def agentic_rl_rewards() -> Iterable[RewardSpec]:
    """Yield the reward functions this plugin provides.

    Called once when the plugin manager builds its registries; every implementation is
    called and their records are merged. A name may be provided by one plugin only.

    :return: an iterable of :class:`core.specs.RewardSpec`.

    Example::

        @hookimpl
        def agentic_rl_rewards():
            yield RewardSpec(name="exact_match", factory=make_exact_match,
                             description="1 if the final answer equals the ground truth",
                             kind="rule")
    """


@hookspec
def agentic_rl_curricula() -> Iterable[CurriculumSpec]:
    """Yield the curricula (RL prompt orderings) this plugin provides.

    Called once when the plugin manager builds its registries; every implementation is
    called and their records are merged. A name may be provided by one plugin only.

    :return: an iterable of :class:`core.specs.CurriculumSpec`.

    Example::

        @hookimpl
        def agentic_rl_curricula():
            yield CurriculumSpec(name="mixed", factory=MixedCurriculum,
                                 description="uniform shuffle over all difficulties")
    """


@hookspec
def agentic_rl_datasets() -> Iterable[DatasetSpec]:
    """Yield the datasets (prompt sources) this plugin provides.

    Called once when the plugin manager builds its registries; every implementation is
    called and their records are merged. A name may be provided by one plugin only.

    :return: an iterable of :class:`core.specs.DatasetSpec` naming domains and splits.

    Example::

        @hookimpl
        def agentic_rl_datasets():
            yield DatasetSpec(name="guru", factory=load_guru, domains=("math", "codegen"),
                              splits=("train", "online_eval"),
                              description="LLM360/guru-RL-92k")
    """


@hookspec
def agentic_rl_environments() -> Iterable[EnvironmentSpec]:
    """Yield the multi-turn environments this plugin provides.

    Called once when the plugin manager builds its registries; every implementation is
    called and their records are merged. A name may be provided by one plugin only.

    :return: an iterable of :class:`core.specs.EnvironmentSpec`.

    Example::

        @hookimpl
        def agentic_rl_environments():
            yield EnvironmentSpec(name="maze", factory=Maze, max_turns=20,
                                  description="grid maze, -1 per step, 0 at goal")
    """
