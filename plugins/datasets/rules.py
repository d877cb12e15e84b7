"""Rule-complexity tasks (issue 18): three procedural families whose number or depth of rules
is the level (1-4), each with one exact answer.

Prompts are compact for character-level models (level 1: 4-12 characters; every prompt at
most ``MAX_PROMPT`` = 120) and answers short (at most ``MAX_ANSWER`` = 8 characters, so
``"#" + answer`` fits the default 10-character length budget of ``composite``). A response
ends with the final-answer marker and the answer, ``"#14"``, as in the synthetic tasks.

``expr``: integer arithmetic on single digits (0-9) with the usual precedence.

    level 1  a+b                                            "4+5="        -> "9"
    level 2  a+b-c (the value may be negative)              "1+6-9="      -> "-2"
    level 3  a+b*c or a-b*c, where reading left to right
             instead of by precedence gives a wrong value   "1-6*9="      -> "-53"
    level 4  three of + - * (at least one *, one + or -) and
             one pair of parentheses around 2-3 operands
             that changes the value                         "2*9-(0+7)="  -> "11"

    Answer: the value as a canonical integer, ``-?(0|[1-9][0-9]*)`` (``014`` and ``+14``
    are malformed). Parts (partial credit): its characters aligned at the units digit.

``rewrite``: rules ``x>y`` (comma separated) applied to a string over ``abcd``. A rule
replaces every occurrence of ``x`` by ``y``, scanning left to right without overlaps (Python's
``str.replace``); the rules apply once each, in the order given, and each one changes the
string when its turn comes (so every rule matters; a later rule may rewrite an earlier one's
output).

    level 1  one rule, a letter for a letter, 5 letters     "d>c:cbcbd="              -> "cbcbc"
    level 2  two such rules                                 "c>d,d>a:cdddd="          -> "aaaaa"
    level 3  three rules, sides of 1-2 letters, at least
             one of 2 letters, 5 letters                    "ab>bd,da>d,c>d:bcaba="   -> "bdbd"
    level 4  four rules, left sides 1-2 letters, right
             sides 0-2 (``x>`` deletes x), 6 letters        "ba>a,b>a,a>b,d>:bbadcb=" -> "bbcb"

    Answer: the rewritten string, 2-8 letters, ``[a-z]+``. Parts: its letters, left-aligned.

``order``: place n items (distinct capitals from A-H, listed in alphabetical order before the
colon) in a row. Clues: ``X<Y`` X is somewhere left of Y; ``X2`` X is at position 2 (1-based);
``X!2`` X is not at position 2; ``X-Y`` X is immediately left of Y. Each puzzle has exactly one
solution (checked by brute force over all n! rows when it is generated), its clues are
minimal (dropping any one admits a second row), and it uses its level's newest clue kind.

    level 1  3 items, X<Y clues (always 2)         "ADE:E<D,A<E="                -> "AED"
    level 2  4 items, + X2 clues (3 clues)          "ACGH:C<H,A4,G<C="            -> "GCHA"
    level 3  5 items, + X!2 clues (5-10 clues)      "BDFGH:B<D,G<H,G3,H!5,B2="    -> "FBGHD"
    level 4  6 items, + X-Y clues (6-10 clues)      "ACDEGH:E-G,C3,G!6,A<C,A!2,H<D=" -> "AHCEGD"

    Answer: the row, left to right, ``[A-Z]+``. Parts: the positions of the row.

Records use Guru's fields with ``data_source = "rules__<family>"``, ``extra_info.domain`` =
the family, ``extra_info.difficulty`` = the level (so ``data.difficulties`` selects levels),
``extra_info.n_rules`` = operators (parentheses count as one), rules or clues in the prompt,
and ``extra_info.sft_response`` = ``"#<answer>"`` (the worked example). A prompt's split is a
hash of its text (``plugins.datasets.synthetic.split_of``), so train and eval never share a
prompt.

Lengths: the longest prompts (``order`` levels 3-4, up to ~47 characters) plus the ChatML
wrapper (19 tokens) and a 12-token response pass the tiny ladder's ``max_position_embeddings``
(64). Qwen2's rotary positions have no hard limit, so this only makes transformers warn;
raise ``ladder.sizes.<size>.arch.max_position_embeddings`` to 128 to silence it.
"""
from __future__ import annotations

import functools
import itertools
import random
import re
from collections.abc import Callable, Sequence

from core.hookspecs import hookimpl
from core.specs import DatasetSpec
from plugins.datasets.synthetic import split_of

MARKER = "#"
SOURCE_PREFIX = "rules__"
LEVELS = (1, 2, 3, 4)
SPLITS = ("train", "eval")
MAX_PROMPT = 120
MAX_ANSWER = 8
# family -> (answer pattern, alignment of its parts for partial credit)
ANSWER_FORMS = {"expr": (r"-?(0|[1-9][0-9]*)", "right"),
                "rewrite": (r"[a-z]+", "left"),
                "order": (r"[A-Z]+", "left")}


# --- expr -------------------------------------------------------------------------------

def evaluate(text: str) -> int:
    """The value of an expression of digits, + - * and parentheses, by precedence."""
    tokens = re.findall(r"\d+|[-+*()]", text)
    pos = 0

    def atom() -> int:
        nonlocal pos
        tok = tokens[pos]
        pos += 1
        if tok == "(":
            value = total()
            pos += 1                        # the ")"
            return value
        return int(tok)

    def product() -> int:
        nonlocal pos
        value = atom()
        while pos < len(tokens) and tokens[pos] == "*":
            pos += 1
            value *= atom()
        return value

    def total() -> int:
        nonlocal pos
        value = product()
        while pos < len(tokens) and tokens[pos] in "+-":
            op = tokens[pos]
            pos += 1
            value = value + product() if op == "+" else value - product()
        return value

    return total()


def _left_to_right(digits: Sequence[int], ops: Sequence[str]) -> int:
    value = digits[0]
    for op, d in zip(ops, digits[1:]):
        value = value + d if op == "+" else value - d if op == "-" else value * d
    return value


def _expr(rng: random.Random, level: int) -> tuple[str, str, int]:
    while True:
        if level <= 2:
            digits = [rng.randrange(10) for _ in range(level + 1)]
            text = "+".join(map(str, digits[:2])) + ("" if level == 1 else f"-{digits[2]}")
            return text + "=", str(evaluate(text)), level
        if level == 3:
            digits, ops = [rng.randrange(10) for _ in range(3)], [rng.choice("+-"), "*"]
            text = f"{digits[0]}{ops[0]}{digits[1]}*{digits[2]}"
            if evaluate(text) != _left_to_right(digits, ops):
                return text + "=", str(evaluate(text)), 2
            continue
        digits, ops = [rng.randrange(10) for _ in range(4)], [rng.choice("+-*") for _ in range(3)]
        if "*" not in ops or not {"+", "-"} & set(ops):
            continue
        start = rng.randrange(3)
        end = rng.randrange(start + 1, min(start + 3, 4))       # 2 or 3 operands, not all 4
        if (start, end) == (0, 3):
            continue
        parts = [str(d) for d in digits]
        parts[start], parts[end] = "(" + parts[start], parts[end] + ")"
        text = parts[0] + "".join(op + p for op, p in zip(ops, parts[1:]))
        if evaluate(text) != evaluate(text.replace("(", "").replace(")", "")):
            return text + "=", str(evaluate(text)), 4          # 3 operators + the parentheses


# --- rewrite ----------------------------------------------------------------------------

_LETTERS = "abcd"
# level -> (rules, string length, left side lengths, right side lengths)
_REWRITE = {1: (1, 5, (1,), (1,)), 2: (2, 5, (1,), (1,)),
            3: (3, 5, (1, 2), (1, 2)), 4: (4, 6, (1, 2), (0, 1, 2))}


def apply_rules(rules: Sequence[tuple[str, str]], text: str) -> str:
    """``text`` after each rule ``(x, y)`` replaced every ``x`` by ``y``, in order."""
    for lhs, rhs in rules:
        text = text.replace(lhs, rhs)
    return text


def _rewrite(rng: random.Random, level: int) -> tuple[str, str, int]:
    k, length, lhs_lens, rhs_lens = _REWRITE[level]
    word = lambda n: "".join(rng.choice(_LETTERS) for _ in range(n))   # noqa: E731
    while True:
        rules = [(word(rng.choice(lhs_lens)), word(rng.choice(rhs_lens))) for _ in range(k)]
        if any(x == y for x, y in rules) or (level == 3 and all(len(x + y) == 2 for x, y in rules)):
            continue
        text = word(length)
        current, fired = text, True
        for lhs, rhs in rules:
            fired = fired and lhs in current
            current = current.replace(lhs, rhs)
        if fired and 2 <= len(current) <= MAX_ANSWER:
            prompt = ",".join(f"{x}>{y}" for x, y in rules) + f":{text}="
            return prompt, current, k


# --- order ------------------------------------------------------------------------------

_ITEMS = "ABCDEFGH"
CLUE_KINDS = ("<", "@", "!", "-")        # before, at position, not at position, just before
MIN_CLUES = {1: 2, 2: 3, 3: 5, 4: 6}     # so the number of clues grows with the level


def _holds(clue: tuple[str, int, int], row: Sequence[int]) -> bool:
    """Whether ``clue`` holds in ``row`` (``row[p]`` is the item at position p)."""
    kind, a, b = clue
    where = {item: p for p, item in enumerate(row)}
    if kind == "<":
        return where[a] < where[b]
    if kind == "@":
        return where[a] == b
    if kind == "!":
        return where[a] != b
    return where[a] + 1 == where[b]


@functools.lru_cache(maxsize=None)
def _clue_table(n: int) -> tuple[list[tuple[int, ...]], dict[tuple[str, int, int], int]]:
    """Every row of n items and, per clue, the bit set of the rows it holds in."""
    rows = list(itertools.permutations(range(n)))
    clues = [(k, a, b) for k in CLUE_KINDS for a in range(n) for b in range(n)
             if (k in "@!") or a != b]
    return rows, {c: sum(1 << i for i, row in enumerate(rows) if _holds(c, row)) for c in clues}


def render_clue(clue: tuple[str, int, int], items: str) -> str:
    kind, a, b = clue
    if kind in "@!":
        return f"{items[a]}{'!' if kind == '!' else ''}{b + 1}"
    return f"{items[a]}{kind}{items[b]}"


def _order(rng: random.Random, level: int) -> tuple[str, str, int]:
    n, kinds = level + 2, CLUE_KINDS[:level]
    rows, table = _clue_table(n)
    full = (1 << len(rows)) - 1
    while True:
        sol = rng.randrange(len(rows))
        true = [c for c, mask in table.items() if c[0] in kinds and mask >> sol & 1]
        rng.shuffle(true)
        chosen, alive = [], full
        for clue in true:                   # add informative clues until one row is left
            if alive & table[clue] != alive:
                chosen.append(clue)
                alive &= table[clue]
            if alive == 1 << sol:
                break
        for clue in list(chosen):           # then drop every clue the others make redundant
            rest = [c for c in chosen if c != clue]
            if functools.reduce(lambda m, c: m & table[c], rest, full) == 1 << sol:
                chosen = rest
        if kinds[-1] in {c[0] for c in chosen} and len(chosen) >= MIN_CLUES[level]:
            break
    rng.shuffle(chosen)
    items = "".join(sorted(rng.sample(_ITEMS, n)))
    prompt = items + ":" + ",".join(render_clue(c, items) for c in chosen) + "="
    return prompt, "".join(items[i] for i in rows[sol]), len(chosen)


# --- records ----------------------------------------------------------------------------

GENERATORS: dict[str, Callable[[random.Random, int], tuple[str, str, int]]] = {
    "expr": _expr, "rewrite": _rewrite, "order": _order}
FAMILIES = tuple(GENERATORS)


def make_record(family: str, level: int, prompt: str, answer: str, n_rules: int, split: str,
                index: int) -> dict:
    return {
        "data_source": SOURCE_PREFIX + family,
        "ability": family,
        "prompt": [{"role": "user", "content": prompt}],
        "reward_model": {"style": "rule", "ground_truth": answer},
        "extra_info": {"domain": family, "difficulty": level, "split": split, "index": index,
                       "n_rules": n_rules, "sft_response": MARKER + answer},
    }


def _check(split: str, families: Sequence[str], levels: Sequence[int]) -> None:
    if split not in SPLITS:
        raise ValueError(f"split {split!r}: allowed {', '.join(SPLITS)}")
    for f in families:
        if f not in GENERATORS:
            raise ValueError(f"unknown rules family {f!r}; allowed: {', '.join(FAMILIES)}")
    for lv in levels:
        if lv not in LEVELS:
            raise ValueError(f"rules level {lv!r}; allowed: {', '.join(map(str, LEVELS))}")


def generate(n: int, split: str, families: Sequence[str] = FAMILIES,
             levels: Sequence[int] = LEVELS, seed: int = 0) -> list[dict]:
    """``n`` records of ``split``, spread evenly over ``families`` x ``levels`` (seeded).

    Within a cell prompts are distinct until its pool is (nearly) exhausted (``expr`` level 1
    has 100 prompts, about 15 of them in eval): after 200 draws that hit only prompts seen
    already a repeat is accepted, as sampling with replacement would.
    """
    _check(split, families, levels)
    cells = [(f, lv) for f in families for lv in levels]
    rng = random.Random(f"rules/{seed}/{split}")
    seen: dict[tuple[str, int], set[str]] = {cell: set() for cell in cells}
    records: list[dict] = []
    for i in range(n):
        family, level = cells[i % len(cells)]
        for attempt in range(2000):
            prompt, answer, n_rules = GENERATORS[family](rng, level)
            if split_of(prompt) == split and (prompt not in seen[family, level] or attempt > 200):
                break
        else:
            raise ValueError(f"no {split} prompt of {family} level {level} in 2000 draws")
        seen[family, level].add(prompt)
        records.append(make_record(family, level, prompt, answer, n_rules, split, i))
    rng.shuffle(records)
    return records


def load(split: str, n: int, domains: Sequence[str] = FAMILIES,
         difficulties: Sequence[int] = LEVELS, seed: int = 0) -> list[dict]:
    """Dataset-plugin factory: ``n`` seeded records of one split."""
    return generate(n, split, domains, difficulties, seed)


@hookimpl
def agentic_rl_datasets():
    yield DatasetSpec(
        name="rules", factory=load, domains=FAMILIES, splits=SPLITS, data_sources=(SOURCE_PREFIX,),
        description="rule-complexity tasks (precedence arithmetic, string rewriting, ordering "
                    "puzzles), levels 1-4 = more rules")
