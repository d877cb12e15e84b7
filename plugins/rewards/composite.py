"""Composite rule rewards (issue 18): one reward built from parts, with level presets from
plain correctness to multi-criteria weighting, for the ``rules__`` and ``synthetic__`` tasks.

Parts, each in [0, 1], of one response (``pred`` = the text after the last ``#``, stripped):

    correct   1 if ``pred`` is well formed and equals the ground truth (exactly ``acc``)
    format    1 if ``pred`` matches the family's answer pattern
              (``plugins.datasets.rules.ANSWER_FORMS``; synthetic: as its own verifier)
    partial   share of the answer's parts that are right: the characters of ``pred`` and of
              the truth, aligned at the units digit for numbers (``rules__expr``,
              ``synthetic__arith``) and at the first character otherwise (letters of
              ``rewrite`` / ``rev``, positions of ``order``, digits of ``sort``), count the
              positions where both agree, divided by the longer length; 0 when malformed.
              ``"#15"`` for 14 gets 1/2, ``"#114"`` 2/3, ``"#EGB"`` for EBG 1/3.
    length    for a well-formed answer, 1 if the whole response has at most
              ``length_budget`` characters, then falling linearly to 0 at twice the
              budget; 0 when malformed (being short earns nothing by itself)

``score = sum(w_part * part) / sum(w_part)``: 1 for a right answer within the budget and 0
for a malformed one at every level (GRPO normalises advantages, so only the ratios matter).
``acc`` is always ``correct``: pass@k counts exact correctness whatever the reward.

Presets (``level``), each built from the same parts:

    | level | correct | format | partial | length (budget 10) | what it rewards            |
    |-------|---------|--------|---------|--------------------|----------------------------|
    | 1     | 1.0     |        |         |                    | binary correctness         |
    | 2     | 1.0     | 0.2    |         |                    | + well-formed answer       |
    | 3     | 1.0     | 0.2    | 0.5     |                    | + partial credit per part  |
    | 4     | 1.0     | 0.2    | 0.5     | 0.3                | + length budget: all four  |

Not hackable: a right answer has every part but length at 1, ``partial`` is 1 only for the
right answer, and ``correct`` must weigh more than ``length``; so a wrong answer scores below
a right one of the same length and format, and below every right answer whatever either's
length or form (tested on random wrong responses at every level).

Options (the factory's keywords; ``reward.options`` in the config, proposed): ``level`` (1-4;
1 is the default, so ``reward.rm.gold=composite`` is plain correctness) or ``parts`` (a list that
includes ``correct``), ``weights`` (part -> weight >= 0, overriding the defaults above),
``length_budget`` (characters, >= 1). A bad option is a ``ConfigError`` naming
``reward.options.<option>`` and the allowed values.
``format_weight`` (``reward.format_weight``) adds to the format part's weight, as the
synthetic verifier adds it to correctness. ``composite_l1`` .. ``composite_l4`` are the
presets under their own names.
"""
from __future__ import annotations

import functools
import math
import re
from collections.abc import Mapping, Sequence

from core.errors import ConfigError
from core.hookspecs import hookimpl
from core.protocols import RewardItem, Score
from core.specs import RewardSpec
from plugins.datasets.rules import ANSWER_FORMS, SOURCE_PREFIX
from plugins.rewards.synthetic import _ALPHABET, extract

PARTS = ("correct", "format", "partial", "length")
DEFAULT_WEIGHTS = {"correct": 1.0, "format": 0.2, "partial": 0.5, "length": 0.3}
LEVELS = (1, 2, 3, 4)
PRESETS = {level: PARTS[:level] for level in LEVELS}
DEFAULT_BUDGET = 10
OPTIONS = ("level", "parts", "weights", "length_budget")
OPTION_KEY = "reward.options"          # where the config passes the options (errors name it)
# data_source -> (answer pattern, alignment of the parts)
# Synthetic domains take the verifier's own alphabet (one source, so a new domain cannot drift);
# numbers align at the units digit except sorted digit strings, which align left.
_LEFT_NUMBERS = {"sort"}                 # pad: fixed width, so either end aligns
FORMS = {**{SOURCE_PREFIX + family: form for family, form in ANSWER_FORMS.items()},
         **{"synthetic__" + d: (pattern, "left" if d in _LEFT_NUMBERS or "a-z" in pattern else "right")
            for d, pattern in _ALPHABET.items()}}


def aligned_share(pred: str, truth: str, align: str) -> float:
    """Positions where ``pred`` and ``truth`` agree, aligned left or right, over the longer."""
    if not pred and not truth:
        return 1.0
    if align == "right":
        pred, truth = pred[::-1], truth[::-1]
    return sum(p == t for p, t in zip(pred, truth)) / max(len(pred), len(truth))


def length_credit(n_chars: int, budget: int) -> float:
    """1 within the budget, then linearly down to 0 at twice the budget."""
    return 1.0 if n_chars <= budget else max(0.0, 1.0 - (n_chars - budget) / budget)


def parts_of(data_source: str, response: str, ground_truth, budget: int) -> tuple[dict, str | None, str]:
    """Every part of one response, the extracted answer and a one-line reason."""
    if data_source not in FORMS:
        raise ValueError(f"composite reward cannot score data_source {data_source!r}; "
                         f"allowed: {', '.join(FORMS)}")
    pattern, align = FORMS[data_source]
    truth, pred = str(ground_truth).strip(), extract(response)
    well = pred is not None and re.fullmatch(pattern, pred) is not None
    parts = {"correct": float(well and pred == truth), "format": float(well),
             "partial": aligned_share(pred, truth, align) if well else 0.0,
             "length": length_credit(len(response), budget) if well else 0.0}
    if pred is None:
        reason = "no final-answer marker '#'"
    elif not well:
        reason = f"answer {pred[:20]!r} does not match {pattern}"
    else:
        reason = "right" if parts["correct"] else f"wrong; {parts['partial']:.2f} of the parts right"
    return parts, pred, reason


class CompositeReward:
    """``reward(data_source, response, ground_truth, extra_info=None) -> Score``, and
    ``score_batch(items)``; ``weights`` maps the parts used to their weights."""

    def __init__(self, weights: Mapping[str, float], length_budget: int = DEFAULT_BUDGET) -> None:
        self.weights = dict(weights)
        self.length_budget = length_budget
        self._total = sum(self.weights.values())

    def __call__(self, data_source: str, response: str, ground_truth,
                 extra_info: dict | None = None) -> Score:
        parts, pred, reason = parts_of(data_source, response, ground_truth, self.length_budget)
        score = sum(w * parts[p] for p, w in self.weights.items()) / self._total
        return Score(score=score, acc=parts["correct"], format=parts["format"], pred=pred,
                     reason=reason)

    def score_batch(self, items: Sequence[RewardItem]) -> list[Score]:
        return [self(*RewardItem(*item)) for item in items]


def _fail(option: str, value, expected: str, allowed=None):
    raise ConfigError(f"{OPTION_KEY}.{option}", value, expected, allowed=allowed)


def _number(option: str, value, minimum: float) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) \
            or value < minimum:
        _fail(option, value, f"expected a number >= {minimum:g}")
    return float(value)


def _parts(level, parts) -> tuple[str, ...]:
    if parts is None:
        if isinstance(level, bool) or level not in LEVELS:
            _fail("level", level, "expected a preset level", allowed=LEVELS)
        return PRESETS[level]
    if level is not None:
        _fail("parts", list(parts) if isinstance(parts, (list, tuple)) else parts,
              f"give either `level` or `parts`, not both (level is {level!r})")
    if isinstance(parts, str) or not isinstance(parts, Sequence) or not parts \
            or any(p not in PARTS for p in parts) or len(set(parts)) != len(parts):
        _fail("parts", parts, "expected a non-empty list of distinct parts", allowed=PARTS)
    if "correct" not in parts:
        _fail("parts", list(parts), "must include 'correct' (without it wrong answers can "
              "score as high as right ones)", allowed=PARTS)
    return tuple(parts)


def resolve(format_weight: float = 0.0, level: int | None = None, parts=None, weights=None,
            length_budget: int = DEFAULT_BUDGET) -> tuple[dict[str, float], int]:
    """Validated (weights of the parts used, length budget) for the factory's options."""
    if level is None and parts is None:
        level = 1
    used = _parts(level, parts)
    given = {} if weights is None else weights
    if not isinstance(given, Mapping):
        _fail("weights", given, "expected a mapping of part -> weight", allowed=used)
    for part, w in given.items():
        if part not in used:
            _fail(f"weights.{part}", w, "not a part of this reward", allowed=used)
    out = {p: _number(f"weights.{p}", given.get(p, DEFAULT_WEIGHTS[p]), 0.0) for p in used}
    if isinstance(format_weight, bool) or not isinstance(format_weight, (int, float)) \
            or not math.isfinite(format_weight) or format_weight < 0:
        raise ConfigError("reward.format_weight", format_weight, "expected a number >= 0")
    if fw := float(format_weight):
        out["format"] = out.get("format", 0.0) + fw
    if out["correct"] <= out.get("length", 0.0):
        _fail("weights.correct", out["correct"], f"must be > 0 and > the length weight "
              f"({out.get('length', 0.0):g}) so a right answer always beats a wrong one")
    if isinstance(length_budget, bool) or not isinstance(length_budget, int) or length_budget < 1:
        _fail("length_budget", length_budget, "expected an integer >= 1 (characters)")
    return out, length_budget


def make_composite(format_weight: float = 0.0, **options) -> CompositeReward:
    """Reward-plugin factory: ``make_composite(format_weight=0.0, level=3)`` and so on."""
    for name in options:
        if name not in OPTIONS:
            _fail(name, options[name], "not an option of the composite reward", allowed=OPTIONS)
    weights, budget = resolve(format_weight, **options)
    return CompositeReward(weights, budget)


@hookimpl
def agentic_rl_rewards():
    sources = (SOURCE_PREFIX, "synthetic__")
    yield RewardSpec(
        name="composite", factory=make_composite, kind="rule", data_sources=sources,
        description="composable rule reward: correctness, format, partial credit, length "
                    "budget (options: level 1-4 or parts/weights/length_budget)")
    for level in LEVELS:
        yield RewardSpec(
            name=f"composite_l{level}", factory=functools.partial(make_composite, level=level),
            kind="rule", data_sources=sources,
            description=f"composite reward, preset level {level}: {' + '.join(PRESETS[level])}")
