"""Twenty questions and guess-my-city (LMRL-Gym's 20Q and Guess My City tasks), with
deterministic oracles over attribute tables shipped in ``data/``.

LMRL-Gym answers the questions with an LLM oracle (a fine-tuned FLAN-T5 that sees the hidden
word and the free-text question). Here the oracle reads a table, so the episode is exactly
reproducible and costs nothing; the price is a closed question vocabulary. ``oracle_url``
(off by default) sends every question the table cannot parse to an OpenAI-compatible judge at
``{oracle_url}/v1/chat/completions`` instead (guesses are still checked against the table).

Rules: the environment hides one item of the level's candidate set; each turn the agent asks
a question or guesses. Reward (LMRL-Gym): -1 for every turn that does not guess right, 0 for
the right guess, which ends the episode; 20 turns at most. An unparseable action is invalid
(-1, like any turn; the oracle answers ``"invalid"``).

- ``twenty_questions``: 91 objects (``data/objects.csv``) with 48 yes/no attributes. Ask an
  attribute (``animal?``, ``is it an animal?``, ``ask animal``) to hear ``yes``/``no``; guess
  with the object's name (``cat``, ``guess cat``, ``is it a cat?``).
- ``guess_my_city``: 78 cities (``data/cities.csv``): country, continent, language and
  yes/no ``coastal``, ``capital``, ``south`` (southern hemisphere), ``olympics`` (hosted the
  Summer Games). Ask a yes/no attribute or a value (``europe?``, ``france?``, ``spanish?``),
  or the open question ``continent?`` (-> ``europe``; LMRL-Gym's city questions may be
  open-ended: one open question keeps some of that without letting a 49-way ``country?``
  end the game in two turns); guess with the city's name.

Level (the knob): the hidden item is drawn from the first 8, 16, 32 or all items of a fixed
shuffle of the table (nested sets). Observations (compact): reset ``"20q: guess the object"``
/ ``"city: guess the city"``, then the oracle's answer (``yes``, ``no``, ``europe``,
``invalid``; ``"yes, cat"`` for the right guess). ``verbose=True`` words them as sentences.

Expert: the optimal-split questioner. It keeps the candidates consistent with every answer so
far and takes the question or guess with the smallest expected number of candidates left
(sum of squared answer-group sizes; a right guess leaves none; ties in table order).
"""
from __future__ import annotations

import csv
import functools
import json
import random
import urllib.request
from collections import Counter
from pathlib import Path

from core.hookspecs import hookimpl
from core.specs import EnvironmentSpec
from plugins.environments._base import TextEnv, normalize, strip_prefixes

DATA = Path(__file__).parent / "data"
SIZES = {1: 8, 2: 16, 3: 32, 4: None}
TURNS = 20
_PREFIXES = ("is it an ", "is it a ", "is it the ", "is it in ", "is it ", "does it ", "ask ",
             "guess ", "it is a ", "it is an ", "it is ", "its ", "in ")


@functools.lru_cache(maxsize=None)
def table(game: str) -> tuple[list[str], dict[str, dict[str, str]], tuple[str, ...]]:
    """``(names in the fixed shuffled order, rows by name, open attributes)``."""
    if game == "twenty_questions":
        raw = list(csv.DictReader((DATA / "objects.csv").open()))
        attrs = sorted({a for r in raw for a in r["attributes"].split()})
        rows = {r["name"]: {a: ("yes" if a in r["attributes"].split() else "no") for a in attrs}
                for r in raw}
        open_attrs: tuple[str, ...] = ()
    else:
        raw = list(csv.DictReader((DATA / "cities.csv").open()))
        rows = {r["name"]: {k: v for k, v in r.items() if k != "name"} for r in raw}
        open_attrs = ("continent",)
    names = [r["name"] for r in raw]
    random.Random(f"{game}-order").shuffle(names)
    return names, rows, open_attrs


@functools.lru_cache(maxsize=None)
def questions(game: str) -> tuple[tuple[str, str, str], ...]:
    """Every table question as ``(text, attribute, value)``: value ``"yes"`` for a yes/no
    attribute, the value asked about for a categorical one, ``"?"`` for an open question."""
    names, rows, open_attrs = table(game)
    first = rows[names[0]]
    out: list[tuple[str, str, str]] = []
    for attr in first:
        values = sorted({r[attr] for r in rows.values()})
        if values == ["no", "yes"]:
            out.append((attr, attr, "yes"))
        else:
            out += [(v, attr, v) for v in values]
            if attr in open_attrs:
                out.append((attr, attr, "?"))
    return tuple(out)


def answer(game: str, item: str, question: tuple[str, str, str]) -> str:
    _, attr, value = question
    actual = table(game)[1][item][attr]
    return actual if value == "?" else ("yes" if actual == value else "no")


class Questions(TextEnv):
    """One env class for both games; ``game`` picks the table."""

    turns_by_level = {lv: TURNS for lv in SIZES}
    invalid_penalty = -1.0

    def __init__(self, game: str, level: int = 2, verbose: bool = False,
                 max_turns: int | None = None, oracle_url: str | None = None,
                 oracle_model: str = "oracle", oracle_timeout: float = 30.0) -> None:
        self.name = game
        super().__init__(level, verbose, max_turns)
        self.game, self.oracle_url = game, oracle_url
        self.oracle_model, self.oracle_timeout = oracle_model, oracle_timeout
        self.names, self.rows, _ = table(game)
        self.by_text = {q[0]: q for q in questions(game)}
        self.thing = "object" if game == "twenty_questions" else "city"

    def candidates(self) -> tuple[str, ...]:
        return tuple(self.names[:SIZES[self.level]])

    def _reset(self) -> str:
        self.item = self.rng.choice(self.candidates())
        self.history: list[tuple[tuple[str, str, str], str]] = []   # (question, answer)
        self.guessed: list[str] = []
        self.episode_key = self.item
        if self.verbose:
            return (f"I am thinking of a {self.thing} ({len(self.candidates())} possible). Ask "
                    f"questions or guess its name; you have {self.max_turns} turns.")
        return "20q: guess the object" if self.game == "twenty_questions" else "city: guess the city"

    def reveal(self) -> str:
        return self.item

    def _step(self, action: str) -> tuple[str, float, bool, dict]:
        text = normalize(action) or ""
        once = strip_prefixes(text, _PREFIXES)
        keys = [k for k in (text, once, strip_prefixes(once, _PREFIXES))
                if k in self.rows or k in self.by_text]
        key = keys[0] if keys else text
        if key in self.rows:
            if key == self.item:
                return self._win(f"Yes! It is {key}." if self.verbose else f"yes, {key}", 0.0)
            self.guessed.append(key)
            return (f"No, it is not {key}." if self.verbose else "no"), -1.0, False, {"guess": key}
        question = self.by_text.get(key)
        if question is not None:
            reply = answer(self.game, self.item, question)
            self.history.append((question, reply))
            return (reply.capitalize() + "." if self.verbose else reply), -1.0, False, {}
        if self.oracle_url and text:
            return self._ask_oracle(action.strip()), -1.0, False, {"oracle": True}
        return self._invalid(f"not a question or a {self.thing}: {action!r}",
                             "I do not understand." if self.verbose else "invalid")

    def _ask_oracle(self, question: str) -> str:
        """The judge's short answer to a free-text question about the hidden item."""
        facts = ", ".join(f"{k}: {v}" for k, v in self.rows[self.item].items() if v != "no")
        body = {"model": self.oracle_model, "temperature": 0, "max_tokens": 16, "messages": [
            {"role": "system", "content": f"You are the oracle of a guessing game. The hidden "
             f"{self.thing} is '{self.item}' ({facts}). Answer the player's question truthfully "
             f"in at most three words (yes or no when it is a yes/no question). Never say the name."},
            {"role": "user", "content": question}]}
        req = urllib.request.Request(self.oracle_url.rstrip("/") + "/v1/chat/completions",
                                     data=json.dumps(body).encode(), method="POST",
                                     headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=self.oracle_timeout) as resp:
                reply = json.load(resp)["choices"][0]["message"]["content"]
        except Exception as exc:   # an unreachable judge must not look like an answer
            raise RuntimeError(f"{self.game}: oracle at {self.oracle_url} failed: {exc!r}") from exc
        reply = normalize(reply) or "invalid"
        return reply.replace(self.item, "it")[:40]


def remaining(env: Questions) -> tuple[str, ...]:
    return tuple(c for c in env.candidates() if c not in env.guessed
                 and all(answer(env.game, c, q) == a for q, a in env.history))


@functools.lru_cache(maxsize=4096)
def _best_action(game: str, cands: tuple[str, ...]) -> str:
    if len(cands) <= 2:
        return cands[0]
    best, best_cost = cands[0], (len(cands) - 1) ** 2      # guessing the first candidate
    for q in questions(game):
        cost = sum(n * n for n in Counter(answer(game, c, q) for c in cands).values())
        if cost < best_cost:
            best, best_cost = q[0] + "?", cost
    return best


def expert(env: Questions) -> str:
    return _best_action(env.game, remaining(env))


def make_twenty_questions(**options) -> Questions:
    return Questions("twenty_questions", **options)


def make_guess_my_city(**options) -> Questions:
    return Questions("guess_my_city", **options)


@hookimpl
def agentic_rl_environments():
    common = dict(max_turns=TURNS, levels=tuple(SIZES), expert=expert,
                  options=("level", "verbose", "max_turns", "oracle_url", "oracle_model", "oracle_timeout"))
    yield EnvironmentSpec(name="twenty_questions", factory=make_twenty_questions,
                          knob="candidate objects: 8, 16, 32, 91", **common,
                          description="yes/no questions to find a hidden object; "
                                      "-1 per turn, 0 on the right guess")
    yield EnvironmentSpec(name="guess_my_city", factory=make_guess_my_city,
                          knob="candidate cities: 8, 16, 32, 78", **common,
                          description="questions to find a hidden city; "
                                      "-1 per turn, 0 on the right guess")
