"""Built-in multi-turn text environments (LMRL-Gym tasks): every public module here is
registered through the ``agentic_rl_environments`` hook.

Each environment follows ``core.protocols.Environment`` (``reset(seed) -> str``,
``step(action) -> (obs, reward, done, info)``, ``max_turns``) with LMRL-Gym's reward rules, a
compact observation format for character-level models (the default) and a verbose one for
real LLMs (``verbose=True``), a ``level`` option (1-4) that sets how many turns an expert
needs, and an expert policy (``EnvironmentSpec.expert``). ``expert_trajectory(name, seed,
**options)`` plays the expert's episode (SFT data, as LMRL-Gym's offline datasets).

``python -m plugins.environments list`` / ``play NAME`` (a person plays in the terminal).
"""
from plugins.environments._base import TextEnv, Trajectory, expert_trajectory, run_episode

__all__ = ["TextEnv", "Trajectory", "expert_trajectory", "run_episode"]
