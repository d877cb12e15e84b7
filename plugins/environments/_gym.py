"""An optional adapter to gymnasium's ``Env`` API (``gymnasium`` is not a dependency; this
module imports it only when called, and is private so the plugin loader skips it).

    from plugins.environments._gym import to_gymnasium
    env = to_gymnasium("maze", level=2)
    obs, info = env.reset(seed=3)
    obs, reward, terminated, truncated, info = env.step("N")

Observations and actions are ``gymnasium.spaces.Text`` over printable ASCII. ``terminated``
is the episode's own end (goal, win, loss), ``truncated`` the ``max_turns`` cut-off;
``reset()`` without a seed draws one from gymnasium's ``np_random``.
"""
from __future__ import annotations

import string
from typing import Any


def to_gymnasium(name: str, max_length: int = 1024, **options: Any):
    """A ``gymnasium.Env`` playing the registered environment ``name`` (factory ``options``)."""
    import gymnasium
    from gymnasium import spaces

    from core.plugins import registry

    spec = registry().get("environments", name)

    class TextGymEnv(gymnasium.Env):
        metadata = {"render_modes": []}

        def __init__(self) -> None:
            self.env = spec.factory(**options)
            charset = string.printable
            self.observation_space = spaces.Text(max_length=max_length, charset=charset)
            self.action_space = spaces.Text(max_length=max_length, min_length=0, charset=charset)

        def reset(self, *, seed: int | None = None, options: dict | None = None):
            super().reset(seed=seed)
            episode = seed if seed is not None else int(self.np_random.integers(2**31))
            return self.env.reset(episode), {"seed": episode}

        def step(self, action: str):
            obs, reward, done, info = self.env.step(action)
            truncated = bool(info.get("truncated"))
            return obs, reward, done and not truncated, truncated, info

        def close(self) -> None:
            self.env.close()

    return TextGymEnv()
