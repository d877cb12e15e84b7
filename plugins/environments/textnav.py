"""Text navigation (LMRL-Gym's Text-Nav task, there built on TextWorld): carry an item from one
room of a house into a container in another and close it.

Rules: the house is a set of rooms on a small grid joined by doors (north/south/east/west).
The task names an item, the room it lies in, and a container (fridge, chest, ...; each
container stands in its own room). Actions: ``N``/``S``/``E``/``W`` (or ``go north``...),
``take ITEM``, ``open CONTAINER``, ``put ITEM`` (into the open container of this room;
``put key in chest`` also parses), ``close CONTAINER``. The episode is won when the item is in
the container and the container is closed. Reward (TextWorld's score, as LMRL-Gym): +1 at the
win, 0 otherwise; an impossible or unparseable action is invalid (reward 0, no effect).

Layout: as in LMRL-Gym, which plays one fixed house from random starts, each level has one
fixed house (rooms, doors and containers drawn from a level seed); the episode seed draws the
start room, the task item and its room, the target container, and distractor items.
``layout="random"`` draws a new house per seed. Level (the knob): 2, 4, 6 or 9 rooms.

Observations (compact, the default)::

    reset  "task: key from office to chest\\nin hall: cup; exits N E"
    move   "in office: key, chest; exits S"        (open containers show "chest(open)")
    other  "took key" / "opened chest" / "put key in chest" / "closed chest" / "invalid"

``verbose=True`` says the same in sentences.

Expert: breadth-first search over the house to the item, take it, to the container, open,
put, close.
"""
from __future__ import annotations

import random
from collections import deque

from core.hookspecs import hookimpl
from core.specs import EnvironmentSpec
from plugins.environments._base import TextEnv, normalize, strip_prefixes
from plugins.environments.maze import DIRS, NAMES, OPPOSITE, WORDS

ROOMS = ("hall", "kitchen", "bedroom", "office", "bathroom", "garden", "attic", "cellar",
         "study", "porch", "pantry", "den")
ITEMS = ("key", "book", "cup", "food", "coin", "pen", "sock", "ball", "apple", "lamp")
CONTAINERS = ("fridge", "chest", "box", "drawer", "basket")
N_ROOMS = {1: 2, 2: 4, 3: 6, 4: 9}
TURNS = {1: 12, 2: 16, 3: 20, 4: 24}
VERBS = {"take": ("take ", "get ", "pick up ", "grab "), "open": ("open ",),
         "close": ("close ", "shut "), "put": ("put ", "insert ", "place ")}


def make_house(n_rooms: int, rng: random.Random) -> tuple[dict, dict]:
    """``(doors, containers)``: ``doors[room][dir] = room`` for ``n_rooms`` rooms grown as a
    random tree on a 3x3 grid; ``containers[room] = name`` for about half the rooms (>= 1)."""
    names = rng.sample(ROOMS, n_rooms)
    cells = {(1, 1): names[0]}
    doors: dict[str, dict[str, str]] = {names[0]: {}}
    for name in names[1:]:
        options = sorted((cell, d) for cell in cells for d, (dr, dc) in DIRS.items()
                         if (cell[0] + dr, cell[1] + dc) not in cells
                         and 0 <= cell[0] + dr < 3 and 0 <= cell[1] + dc < 3)
        (r, c), d = rng.choice(options)
        new = (r + DIRS[d][0], c + DIRS[d][1])
        cells[new] = name
        doors[name] = {OPPOSITE[d]: cells[r, c]}
        doors[cells[r, c]][d] = name
    holders = rng.sample(names, max(1, n_rooms // 2))
    kinds = rng.sample(CONTAINERS, min(len(holders), len(CONTAINERS)))
    return doors, dict(zip(holders, kinds))


def route(doors: dict, start: str, goal: str) -> list[str]:
    """The door directions of a shortest walk from ``start`` to ``goal``."""
    prev: dict[str, tuple[str, str] | None] = {start: None}
    queue = deque([start])
    while queue:
        room = queue.popleft()
        for d in ("N", "E", "S", "W"):
            nxt = doors[room].get(d)
            if nxt is not None and nxt not in prev:
                prev[nxt] = (room, d)
                queue.append(nxt)
    steps, room = [], goal
    while prev[room] is not None:
        room, d = prev[room]
        steps.append(d)
    return steps[::-1]


def parse(action: str) -> tuple[str, str] | None:
    """``("move", "N")``, ``("take", "key")``, ... or None."""
    text = normalize(action) or ""
    move = WORDS.get(strip_prefixes(text, ("go ", "move ", "walk ")))
    if move:
        return "move", move
    for verb, prefixes in VERBS.items():
        for p in prefixes:
            if text.startswith(p):
                obj = text[len(p):].strip()
                if verb == "put":
                    obj = obj.split(" in ")[0].split(" into ")[0].strip()
                return verb, strip_prefixes(obj, ("the ",))
    return None


class TextNav(TextEnv):
    name = "textnav"
    turns_by_level = TURNS
    invalid_penalty = 0.0

    def __init__(self, level: int = 2, verbose: bool = False, max_turns: int | None = None,
                 layout: str = "fixed") -> None:
        if layout not in ("fixed", "random"):
            raise ValueError(f"textnav: layout {layout!r}; allowed: fixed, random")
        super().__init__(level, verbose, max_turns)
        self.layout_mode = layout
        self.doors: dict = {}
        self.containers: dict[str, str] = {}

    def _reset(self) -> str:
        key = f"textnav-house/{self.level}" + (f"/{self.seed}" if self.layout_mode == "random" else "")
        self.doors, self.containers = make_house(N_ROOMS[self.level], random.Random(key))
        rooms = sorted(self.doors)
        self.room = self.rng.choice(rooms)
        items = self.rng.sample(ITEMS, 1 + self.rng.randint(1, 3))
        self.item = items[0]
        self.box_room = self.rng.choice(sorted(self.containers))
        self.box = self.containers[self.box_room]
        self.item_room = self.rng.choice([r for r in rooms if r != self.box_room])
        self.floor = {r: [] for r in rooms}          # items lying in each room
        self.floor[self.item_room].append(self.item)
        for extra in items[1:]:
            self.floor[self.rng.choice(rooms)].append(extra)
        self.inside = {b: [] for b in self.containers.values()}
        self.is_open = {b: False for b in self.containers.values()}
        self.held: list[str] = []
        self.episode_key = f"{key} {self.room} {self.item}@{self.item_room} {self.box} {self.floor}"
        if self.verbose:
            task = (f"Your task: put the {self.item}, which is in the {self.item_room}, into the "
                    f"{self.box}, and close the {self.box}. Move with N, S, E, W; use take, open, "
                    f"put and close.")
        else:
            task = f"task: {self.item} from {self.item_room} to {self.box}"
        return task + "\n" + self._describe()

    def _step(self, action: str) -> tuple[str, float, bool, dict]:
        parsed = parse(action)
        if parsed is None:
            return self._invalid(f"unparseable: {action!r}")
        verb, obj = parsed
        box_here = self.containers.get(self.room)
        if verb == "move":
            if obj not in self.doors[self.room]:
                return self._invalid("no door", "There is no door that way." if self.verbose else "invalid")
            self.room = self.doors[self.room][obj]
            return self._describe(), 0.0, False, {}
        if verb == "take" and obj in self.floor[self.room]:
            self.floor[self.room].remove(obj)
            self.held.append(obj)
            return self._say(f"took {obj}", f"You take the {obj}.")
        if verb == "take" and box_here and self.is_open[box_here] and obj in self.inside[box_here]:
            self.inside[box_here].remove(obj)
            self.held.append(obj)
            return self._say(f"took {obj}", f"You take the {obj} from the {box_here}.")
        if verb in ("open", "close") and obj == box_here and self.is_open[obj] != (verb == "open"):
            self.is_open[obj] = verb == "open"
            if verb == "close" and self.item in self.inside[obj] and obj == self.box:
                return self._win("closed " + obj if not self.verbose else
                                 f"You close the {obj}. Task complete!", 1.0)
            done_word = "opened" if verb == "open" else "closed"
            return self._say(f"{done_word} {obj}", f"You {verb} the {obj}.")
        if verb == "put" and obj in self.held and box_here and self.is_open[box_here]:
            self.held.remove(obj)
            self.inside[box_here].append(obj)
            return self._say(f"put {obj} in {box_here}", f"You put the {obj} into the {box_here}.")
        return self._invalid(f"cannot {verb} {obj!r} here",
                             "You can't do that." if self.verbose else "invalid")

    def _say(self, compact: str, verbose: str) -> tuple[str, float, bool, dict]:
        return (verbose if self.verbose else compact), 0.0, False, {}

    def _describe(self) -> str:
        things = list(self.floor[self.room])
        box = self.containers.get(self.room)
        if box:
            things.append(box + ("(open)" if self.is_open[box] else ""))
        exits = [d for d in ("N", "E", "S", "W") if d in self.doors[self.room]]
        if not self.verbose:
            return f"in {self.room}: {', '.join(things) + '; ' if things else ''}exits {' '.join(exits)}"
        seen = f" You see: {', '.join(things)}." if things else " The room is empty."
        return f"You are in the {self.room}.{seen} Exits: {', '.join(NAMES[d] for d in exits)}."


def expert(env: TextNav) -> str:
    """Walk to the item, take it, walk to the container, open, put, close."""
    if env.item in env.inside[env.box]:
        return f"close {env.box}"
    if env.item in env.held:
        if env.room != env.box_room:
            return route(env.doors, env.room, env.box_room)[0]
        return f"put {env.item}" if env.is_open[env.box] else f"open {env.box}"
    if env.room != env.item_room:
        return route(env.doors, env.room, env.item_room)[0]
    return f"take {env.item}"


@hookimpl
def agentic_rl_environments():
    yield EnvironmentSpec(
        name="textnav", factory=TextNav, max_turns=max(TURNS.values()),
        options=("level", "verbose", "max_turns", "layout"), levels=tuple(N_ROOMS),
        knob="rooms in the house: 2, 4, 6, 9", expert=expert,
        description="carry an item to a container in another room and close it; +1 at the win")
