"""The reward of the multi-turn environments (``plugins/environments/``): the episode's return.

The trainers play episodes turn by turn (``core/backends/multiturn.py`` locally, the verl agent
loop ``core/backends/verl_agent.py``) and use the return the environment summed; they never
send a multi-turn rollout through a reward plugin. This plugin is what ``reward.name`` names
for ``data.dataset=environments`` (the config check pairs rewards with data sources), and it
scores a single response the only way a text can be scored without the conversation: its
non-empty lines replayed as the episode's actions, one per turn, from the record's seed
(``score`` = return, ``acc`` = success). A response of no lines takes no action (return 0).
"""
from __future__ import annotations

from core.hookspecs import hookimpl
from core.protocols import Score
from core.specs import RewardSpec


def replay(extra_info: dict, response: str) -> tuple[float, bool, int]:
    """(return, success, turns) of the response's lines played in the record's episode."""
    from core.backends.multiturn import make_env
    env, _ = make_env({"data_source": "env__", "extra_info": extra_info})
    ret, success, turns = 0.0, False, 0
    try:
        for line in (ln for ln in response.splitlines() if ln.strip()):
            _obs, reward, done, info = env.step(line)
            ret, success, turns = ret + float(reward), bool(info.get("success")), turns + 1
            if done:
                break
    finally:
        getattr(env, "close", lambda: None)()
    return ret, success, turns


class EpisodeReturn:
    """The reward protocol (``score_batch(items) -> [Score]``) over replayed episodes."""

    def __init__(self, format_weight: float = 0.0) -> None:
        self.format_weight = format_weight      # no format part: accepted for the protocol

    def score_batch(self, items) -> list[Score]:
        out = []
        for item in items:
            ret, success, turns = replay(item.extra_info or {}, item.response)
            out.append(Score(score=ret, acc=float(success), format=float(turns > 0),
                             pred=None, reason="success" if success else f"{turns} turns"))
        return out


@hookimpl
def agentic_rl_rewards():
    yield RewardSpec(
        name="env_return", factory=EpisodeReturn, kind="rule", data_sources=("env__",),
        description="episode return of the multi-turn environments (success = correct); "
                    "trainers use the played episode's return")
