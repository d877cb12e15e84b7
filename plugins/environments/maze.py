"""Maze navigation, fully and partially observed (LMRL-Gym's Maze task).

Rules: the agent walks a grid maze of n x n cells (walls between cells, the border closed)
from a start cell to a goal cell with the moves ``N`` (up), ``S``, ``E``, ``W``. Reward
(LMRL-Gym's ``standard_reward``): -1 per move (a move into a wall costs -1 and leaves the
agent where it was), -4 for an action that is not a move, 0 for the move that reaches the
goal, which ends the episode. ``max_turns`` ends it too (``info["truncated"]``).

Layout: as in LMRL-Gym, where one fixed maze is played from random starts, each level has one
fixed maze (a seeded recursive-backtracker maze with a few extra openings, so it has loops);
the episode seed draws the start and the goal. ``layout="random"`` draws a new maze per seed
instead (then the observation is no longer Markov: the policy never sees the map).
Level (the size knob): 1: 3x3, 2: 4x4, 3: 6x6, 4: 8x8 cells.

Observations (compact, the default; rows and columns count from 0 at the top left)::

    maze    reset  "at 0,0 goal 2,2 walls NW"     step  "at 0,1 walls N"
    maze_po reset  "at 0,0 goal 2,2 walls NW"     step  "walls N"

The partially observed variant gives the position only at reset, as LMRL-Gym's
``describe_observation_only_walls``: the policy must track where it is. An action that is not
a move gives ``"invalid"`` before the usual observation; reaching the goal gives ``"goal"``.
``verbose=True`` says the same in sentences. Actions are parsed leniently: ``n``, ``North``,
``up``, ``move up`` are all ``N``.

Expert: breadth-first search on the true maze from the current cell (ties broken N, E, S, W).
"""
from __future__ import annotations

import random
from collections import deque

from core.hookspecs import hookimpl
from core.specs import EnvironmentSpec
from plugins.environments._base import TextEnv, normalize, strip_prefixes

DIRS = {"N": (-1, 0), "E": (0, 1), "S": (1, 0), "W": (0, -1)}
OPPOSITE = {"N": "S", "S": "N", "E": "W", "W": "E"}
WORDS = {"n": "N", "north": "N", "up": "N", "s": "S", "south": "S", "down": "S",
         "e": "E", "east": "E", "right": "E", "w": "W", "west": "W", "left": "W"}
NAMES = {"N": "north", "E": "east", "S": "south", "W": "west"}
SIZES = {1: 3, 2: 4, 3: 6, 4: 8}
TURNS = {1: 10, 2: 16, 3: 40, 4: 50}
Cell = tuple[int, int]


def make_layout(n: int, rng: random.Random) -> dict[Cell, set[str]]:
    """The open directions of each cell of an n x n maze: a recursive-backtracker spanning
    tree plus n // 2 extra openings (loops), all drawn from ``rng``."""
    open_dirs: dict[Cell, set[str]] = {(r, c): set() for r in range(n) for c in range(n)}
    stack, seen = [(0, 0)], {(0, 0)}
    while stack:
        r, c = stack[-1]
        nexts = [(d, (r + dr, c + dc)) for d, (dr, dc) in DIRS.items()
                 if (r + dr, c + dc) in open_dirs and (r + dr, c + dc) not in seen]
        if not nexts:
            stack.pop()
            continue
        d, cell = rng.choice(nexts)
        open_dirs[r, c].add(d)
        open_dirs[cell].add(OPPOSITE[d])
        seen.add(cell)
        stack.append(cell)
    closed = sorted(((r, c), d) for (r, c) in open_dirs for d in ("E", "S")
                    if d not in open_dirs[r, c] and (r + DIRS[d][0], c + DIRS[d][1]) in open_dirs)
    for (r, c), d in rng.sample(closed, min(n // 2, len(closed))):
        open_dirs[r, c].add(d)
        open_dirs[r + DIRS[d][0], c + DIRS[d][1]].add(OPPOSITE[d])
    return open_dirs


def shortest_moves(layout: dict[Cell, set[str]], start: Cell, goal: Cell) -> list[str]:
    """The moves of a shortest path (BFS, neighbours in N, E, S, W order)."""
    prev: dict[Cell, tuple[Cell, str] | None] = {start: None}
    queue = deque([start])
    while queue:
        cell = queue.popleft()
        if cell == goal:
            break
        for d in DIRS:
            if d in layout[cell]:
                nxt = (cell[0] + DIRS[d][0], cell[1] + DIRS[d][1])
                if nxt not in prev:
                    prev[nxt] = (cell, d)
                    queue.append(nxt)
    moves, cell = [], goal
    while prev[cell] is not None:
        cell, d = prev[cell]
        moves.append(d)
    return moves[::-1]


def parse_move(action: str) -> str | None:
    text = strip_prefixes(normalize(action) or "", ("move ", "go "))
    return WORDS.get(text)


class Maze(TextEnv):
    """Grid maze; ``observed="full"`` (``maze``) or ``"partial"`` (``maze_po``)."""

    name = "maze"
    turns_by_level = TURNS
    invalid_penalty = -4.0

    def __init__(self, level: int = 2, verbose: bool = False, max_turns: int | None = None,
                 layout: str = "fixed", observed: str = "full") -> None:
        if layout not in ("fixed", "random"):
            raise ValueError(f"maze: layout {layout!r}; allowed: fixed, random")
        if observed not in ("full", "partial"):
            raise ValueError(f"maze: observed {observed!r}; allowed: full, partial")
        self.name = "maze" if observed == "full" else "maze_po"
        super().__init__(level, verbose, max_turns)
        self.layout_mode, self.observed, self.n = layout, observed, SIZES[level]
        self.layout: dict[Cell, set[str]] = {}
        self.pos = self.goal = (0, 0)

    def _reset(self) -> str:
        key = f"maze-layout/{self.level}" + (f"/{self.seed}" if self.layout_mode == "random" else "")
        self.layout = make_layout(self.n, random.Random(key))
        self.pos, self.goal = self.rng.sample(sorted(self.layout), 2)
        self.episode_key = f"{key} {self.pos} {self.goal}"
        return self._describe(first=True)

    def _step(self, action: str) -> tuple[str, float, bool, dict]:
        move = parse_move(action)
        if move is None:
            obs, reward, done, info = self._invalid(f"not a move: {action!r}")
            prefix = "That is not a move. " if self.verbose else "invalid "
            return prefix + self._describe(), reward, done, info
        bump = move not in self.layout[self.pos]
        if not bump:
            self.pos = (self.pos[0] + DIRS[move][0], self.pos[1] + DIRS[move][1])
        if self.pos == self.goal:
            return self._win("You reached the goal." if self.verbose else "goal", 0.0)
        prefix = ""
        if self.verbose:
            prefix = "You bumped into a wall. " if bump else f"You moved {NAMES[move]}. "
        return prefix + self._describe(), -1.0, False, {"bump": bump}

    def _describe(self, first: bool = False) -> str:
        walls = [d for d in ("N", "E", "S", "W") if d not in self.layout[self.pos]]
        show_pos = first or self.observed == "full"
        if not self.verbose:
            parts = [f"at {self.pos[0]},{self.pos[1]}"] if show_pos else []
            if first:
                parts.append(f"goal {self.goal[0]},{self.goal[1]}")
            parts.append("walls " + ("".join(walls) or "none"))
            return " ".join(parts)
        text = f"You are at row {self.pos[0]}, column {self.pos[1]}. " if show_pos else ""
        if first:
            text = (f"Find the goal in a {self.n}x{self.n} maze (rows and columns from 0 at the "
                    f"top left) by moving N, S, E or W. {text}The goal is at row {self.goal[0]}, "
                    f"column {self.goal[1]}. ")
        names = [NAMES[d] for d in walls]
        if not names:
            return text + "There are no walls around you."
        return text + f"There are walls to the {', '.join(names)}."


def expert(env: Maze) -> str:
    """The first move of a shortest path to the goal."""
    return shortest_moves(env.layout, env.pos, env.goal)[0]


def make_maze(**options) -> Maze:
    return Maze(observed="full", **options)


def make_maze_po(**options) -> Maze:
    return Maze(observed="partial", **options)


@hookimpl
def agentic_rl_environments():
    common = dict(max_turns=max(TURNS.values()), levels=tuple(SIZES), expert=expert,
                  options=("level", "verbose", "max_turns", "layout"),
                  knob="maze size: 3x3, 4x4, 6x6, 8x8 cells")
    rule = "-1 per move, -4 invalid, 0 at the goal"
    yield EnvironmentSpec(name="maze", factory=make_maze, **common,
                          description=f"grid maze, position shown each turn; {rule}")
    yield EnvironmentSpec(name="maze_po", factory=make_maze_po, **common,
                          description=f"grid maze, only nearby walls after the start; {rule}")
