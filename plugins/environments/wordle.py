"""Wordle (LMRL-Gym's Wordle task).

Rules: guess a hidden five-letter word in at most 6 guesses. After each guess every letter is
marked ``g`` (right letter, right place), ``y`` (in the word, elsewhere) or ``x`` (not in the
word, or all its copies already marked), with the standard two-pass rule for repeated letters.
A guess must be a word of the list (``data/words5.txt``, 1,060 common English words, shipped
in the repo; checked against Debian's ``wamerican`` list); anything else is invalid and still
uses a guess. Reward (LMRL-Gym): -1 for every guess that is not the answer (invalid ones too),
0 for the guess that finds it, which ends the episode; after 6 guesses the episode ends.

Level (the knob): the answer is drawn from the first 16, 64, 256 or all 1,060 words of a fixed
shuffle of the list (nested sets); guesses may be any listed word at every level.

Observations (compact, the default): reset ``"wordle 5 letters 6 tries"``; after a guess its
marks, e.g. ``"xygxx"`` (``"ggggg"`` wins), or ``"invalid"``. ``verbose=True`` explains them.

Expert: candidate elimination. It keeps the level's words that agree with every mark so far
and guesses the listed word that minimises the expected number of candidates left (a
candidate on ties, since it may win). The marks are public, so the expert is imitable.
"""
from __future__ import annotations

import functools
import random
from collections import Counter
from pathlib import Path

from core.hookspecs import hookimpl
from core.specs import EnvironmentSpec
from plugins.environments._base import TextEnv, normalize, strip_prefixes

WORDS_FILE = Path(__file__).parent / "data" / "words5.txt"
SIZES = {1: 16, 2: 64, 3: 256, 4: None}
TRIES = 6


@functools.lru_cache(maxsize=1)
def word_list() -> tuple[str, ...]:
    """All guessable words in a fixed shuffled order (level sets are its prefixes)."""
    words = sorted({w.strip() for w in WORDS_FILE.read_text().split() if w.strip()})
    random.Random("wordle-order").shuffle(words)
    return tuple(words)


def answers(level: int) -> tuple[str, ...]:
    return word_list()[:SIZES[level]]


def marks(guess: str, answer: str) -> str:
    """The g/y/x marks of ``guess`` against ``answer`` (greens first, then yellows left to
    right while unmatched copies of the letter remain)."""
    out = ["x"] * len(guess)
    left = Counter(a for g, a in zip(guess, answer) if g != a)
    for i, (g, a) in enumerate(zip(guess, answer)):
        if g == a:
            out[i] = "g"
        elif left[g] > 0:
            out[i] = "y"
            left[g] -= 1
    return "".join(out)


def mark_codes(guesses: tuple[str, ...], answers_: tuple[str, ...]):
    """``marks(g, a)`` for every pair as a base-3 code (x=0, y=1, g=2), an int array
    ``[len(guesses), len(answers_)]``; vectorised, the same rule as ``marks``."""
    import numpy as np

    g = np.array([[ord(c) for c in w] for w in guesses], dtype=np.int8)[:, None, :]   # G,1,5
    a = np.array([[ord(c) for c in w] for w in answers_], dtype=np.int8)[None, :, :]   # 1,A,5
    green = g == a                                                                     # G,A,5
    same_g = g[..., :, None] == g[..., None, :]                                        # G,1,5,5
    earlier = np.tril(np.ones((5, 5), dtype=bool), -1)                                 # j < i
    used_before = (same_g & earlier & ~green[..., None, :]).sum(-1)                    # G,A,5
    avail = ((g[..., :, None] == a[..., None, :]) & ~green[..., None, :]).sum(-1)      # G,A,5
    yellow = ~green & (used_before < avail)
    digits = np.where(green, 2, np.where(yellow, 1, 0))
    return (digits * 3 ** np.arange(4, -1, -1)).sum(-1)


def best_guess(candidates: tuple[str, ...]) -> str:
    """The listed word whose marks split ``candidates`` into the smallest expected remainder
    (sum of squared part sizes; the all-green part counts 0, so candidates win ties; then
    list order)."""
    import numpy as np

    if len(candidates) <= 2:
        return candidates[0]
    pool = candidates + word_list()
    codes = mark_codes(pool, candidates)
    counts = np.bincount((codes + 243 * np.arange(len(pool))[:, None]).ravel(),
                         minlength=243 * len(pool)).reshape(len(pool), 243)
    counts[:, 242] = 0
    return pool[int(np.argmin((counts * counts).sum(1)))]


_best_guess_cached = functools.lru_cache(maxsize=64)(best_guess)


class Wordle(TextEnv):
    name = "wordle"
    turns_by_level = {lv: TRIES for lv in SIZES}
    invalid_penalty = -1.0

    def _reset(self) -> str:
        self.answer = self.rng.choice(answers(self.level))
        self.history: list[tuple[str, str]] = []     # (guess, marks) of the valid guesses
        self.episode_key = self.answer
        if self.verbose:
            return (f"Guess the hidden 5-letter English word in {TRIES} tries. After each guess "
                    f"each letter is marked g (right place), y (in the word elsewhere) or x "
                    f"(not in the word). Answer with one word.")
        return f"wordle 5 letters {TRIES} tries"

    def reveal(self) -> str:
        return self.answer

    def _step(self, action: str) -> tuple[str, float, bool, dict]:
        guess = strip_prefixes(normalize(action) or "", ("guess ",)).replace(" ", "")
        left = self.max_turns - self.turn
        if guess not in _known():
            obs = (f"'{guess}' is not a word of the list. {left} guesses left." if self.verbose
                   else "invalid")
            return self._invalid(f"not in the word list: {guess!r}", obs)
        m = marks(guess, self.answer)
        self.history.append((guess, m))
        if guess == self.answer:
            return self._win(f"{m} Solved!" if self.verbose else m, 0.0)
        if self.verbose:
            return f"{guess.upper()}: {' '.join(m)}. {left} guesses left.", -1.0, False, {}
        return m, -1.0, False, {}


@functools.lru_cache(maxsize=1)
def _known() -> frozenset[str]:
    return frozenset(word_list())


def expert(env: Wordle) -> str:
    candidates = tuple(w for w in answers(env.level)
                       if all(marks(g, w) == m for g, m in env.history))
    return _best_guess_cached(candidates)


@hookimpl
def agentic_rl_environments():
    yield EnvironmentSpec(
        name="wordle", factory=Wordle, max_turns=TRIES,
        options=("level", "verbose", "max_turns"), levels=tuple(SIZES),
        knob="answer drawn from 16, 64, 256 or 1,060 words", expert=expert,
        description="guess a 5-letter word in 6 tries from g/y/x marks; -1 per guess, 0 on the answer")
