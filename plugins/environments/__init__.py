"""Built-in multi-turn text environments (LMRL-Gym tasks): every public module here is
registered through the ``agentic_rl_environments`` hook.

Each environment follows ``core.protocols.Environment`` (``reset(seed) -> str``,
``step(action) -> (obs, reward, done, info)``, ``max_turns``) with LMRL-Gym's reward rules, a
compact observation format for character-level models (the default) and a verbose one for
real LLMs (``verbose=True``), a ``level`` option (1-4) that sets how many turns an expert
needs, and an expert policy (``EnvironmentSpec.expert``). ``expert_trajectory(name, seed,
**options)`` plays the expert's episode (SFT data, as LMRL-Gym's offline datasets).

``python -m plugins.environments list`` / ``play NAME`` (a person plays in the terminal).

What was taken from where, and why:

- LMRL-Gym (github.com/abdulhaim/LMRL-Gym, arXiv 2311.18232): the tasks and their reward
  rules, read and rewritten (no code copied). Its oracles and buyers are LLMs; ours are tables
  and rules (exact, free, reproducible), with an ``oracle_url`` judge as an option.
- gymnasium: the API shape only (seeded ``reset``, ``step``, terminated vs truncated in
  ``info["truncated"]``); ``_gym.to_gymnasium`` adapts any environment to ``gymnasium.Env``
  when gymnasium is installed, so it is not a dependency.
- python-chess (rules, SAN/UCI parsing) and Debian's Stockfish (the opponent and the endgame
  expert), driven over a minimal UCI pipe instead of ``chess.engine`` whose background thread
  is not a daemon and keeps the interpreter alive while an engine is open.
- TextArena and GEM (gem-llm) were checked and not used: their Wordle and word games download
  NLTK corpora at run time (no network here), their 20 Questions needs an LLM game master,
  their formats (``[guess]``, ``\\boxed{}``) and rewards are not LMRL-Gym's, and both pull in
  heavy dependencies. The g/y/x Wordle marks with the two-pass repeated-letter rule match
  theirs (and the real game).
"""
from plugins.environments._base import TextEnv, Trajectory, expert_trajectory, run_episode

__all__ = ["TextEnv", "Trajectory", "expert_trajectory", "run_episode"]
