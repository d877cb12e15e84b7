"""reasoning-gym (PyPI ``reasoning-gym==0.1.25``) tasks in compact prompts for the tiny ladder.

The library's procedural generators, with their own difficulty knobs, produce each problem;
its natural-language question (34-930 characters, median ~150: too long for a character-level
model whose context is 64 positions) is re-rendered compactly from the entry's metadata, in the
style of the synthetic tasks. The answer is the library's answer (``word_sorting`` drops the
spaces after the commas, which the library's own ``score_answer`` accepts as well), and every
ground truth scores 1.0 under the library's ``score_answer`` (a test checks it).

====================  ==================  =====================  ==============================
domain                skill               prompt -> answer       level 1 .. 4 (library knobs)
====================  ==================  =====================  ==============================
``chain_sum``         signed +/- chains   ``4-1-7=`` -> ``-4``   terms x digits: 2x1, 3x1, 2x2, 3x2
``products``          multiplication      ``7*8=`` -> ``56``     terms x digits: 2x1, 3x1, 2x2, 2x3
``letter_counting``   counting            ``c:n:hundred=``->1    words: 1, 2, 3, 4
``word_sorting``      lexicographic order ``w<:cat,Bat=``        words x length: 2x3, 2x3-5,
                                          -> ``Bat,cat``         3x3-4, 3x3-5 (ASCII order)
``base_conversion``   positional notation ``1011:2>10=``->11     value <= 15, 63, 255, 1000;
                                                                 bases 2-10, 2-10, 2-16, 2-16
``fraction_simplif``  common divisors     ``f:6/8=`` -> ``3/4``  value <= 9, 20, 50, 100;
 ``ication``                                                     factor <= 5, 10, 20, 50
====================  ==================  =====================  ==============================

A response is ``#`` and the answer (``#56``), as for the synthetic tasks; the rule verifier is
``plugins/rewards/reasoning_gym.py`` (exact match, no library import, so verl's reward workers
stay light). Records use Guru-RL-92k's field names, ``data_source`` ``rg__<task>``, and carry
``extra_info.sft_response``. The split of a prompt is a hash of its text (as in
``plugins.datasets.synthetic``), so train and eval never share a prompt; each (task, level)
stream is seeded from (seed, split, task, level), so different seeds draw different streams.
"""
from __future__ import annotations

import functools
import hashlib
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from core.errors import UserError
from core.hookspecs import hookimpl
from core.specs import DatasetSpec
from plugins.datasets.synthetic import split_of

MARKER = "#"
SOURCE_PREFIX = "rg__"
PIN = "reasoning-gym==0.1.25"
LEVELS = (1, 2, 3, 4)
SPLITS = ("train", "eval")


def _expr(e: dict) -> tuple[str, str]:
    return e["metadata"]["expression"].replace(" ", "") + "=", e["answer"]


def _lcm(e: dict) -> tuple[str, str]:
    return "l:" + ",".join(map(str, e["metadata"]["numbers"])) + "=", e["answer"]


def _words(e: dict) -> tuple[str, str]:
    m = e["metadata"]
    arrow = "<" if m["direction"] == "ascending" else ">"
    return f"w{arrow}:{','.join(m['transformed_words'])}=", ",".join(m["sorted_words"])


def _base(e: dict) -> tuple[str, str]:
    m = e["metadata"]
    return f"{m['source_repr']}:{m['source_base']}>{m['target_base']}=", e["answer"]


def _fraction(e: dict) -> tuple[str, str]:
    m = e["metadata"]
    return f"f:{m['numerator']}/{m['denominator']}=", e["answer"]


@dataclass(frozen=True)
class Task:
    """One library task: its config knobs per level (1-4), fixed knobs, and the renderer."""
    render: Callable[[dict], tuple[str, str]]
    levels: dict[int, dict]
    fixed: dict = field(default_factory=dict)
    keep: Callable[[str], bool] = lambda answer: True     # drop trivial answers


def _terms(terms: int, digits: int) -> dict:
    return {"min_terms": terms, "max_terms": terms, "min_digits": digits, "max_digits": digits}


TASKS: dict[str, Task] = {
    "chain_sum": Task(_expr, {1: _terms(2, 1), 2: _terms(3, 1), 3: _terms(2, 2), 4: _terms(3, 2)},
                      {"allow_negation": False}),
    "products": Task(_expr, {1: _terms(2, 1), 2: _terms(3, 1), 3: _terms(2, 2), 4: _terms(2, 3)},
                     {"allow_negation": False}, keep=lambda answer: answer != "0"),
    "lcm": Task(_lcm, {lv: {"min_numbers": 2, "max_numbers": 2, "min_value": 2, "max_value": v}
                       for lv, v in zip(LEVELS, (10, 20, 50, 100))}),
    "word_sorting": Task(_words, {
        1: {"min_words": 2, "max_words": 2, "min_word_length": 3, "max_word_length": 3},
        2: {"min_words": 2, "max_words": 2, "min_word_length": 3, "max_word_length": 5},
        3: {"min_words": 3, "max_words": 3, "min_word_length": 3, "max_word_length": 4},
        4: {"min_words": 3, "max_words": 3, "min_word_length": 3, "max_word_length": 5}}),
    "base_conversion": Task(_base, {
        1: {"min_value": 1, "max_value": 15, "min_base": 2, "max_base": 10},
        2: {"min_value": 1, "max_value": 63, "min_base": 2, "max_base": 10},
        3: {"min_value": 1, "max_value": 255, "min_base": 2, "max_base": 16},
        4: {"min_value": 1, "max_value": 1000, "min_base": 2, "max_base": 16}}),
    "fraction_simplification": Task(_fraction, {
        1: {"min_value": 1, "max_value": 9, "min_factor": 2, "max_factor": 5},
        2: {"min_value": 1, "max_value": 20, "min_factor": 2, "max_factor": 10},
        3: {"min_value": 1, "max_value": 50, "min_factor": 2, "max_factor": 20},
        4: {"min_value": 1, "max_value": 100, "min_factor": 2, "max_factor": 50}},
        {"styles": ("plain",)}),
}
DOMAINS = tuple(TASKS)


def _library():
    try:
        import reasoning_gym
    except ImportError as exc:
        raise UserError(f"data.dataset=reasoning_gym needs the reasoning-gym library: "
                        f"pip install {PIN}") from exc
    return reasoning_gym


@functools.lru_cache(maxsize=256)
def _dataset(task: str, level: int, stream_seed: int):
    """The library's dataset of ``task`` at ``level`` (an indexable, seeded stream)."""
    return _library().create_dataset(task, size=10**8, seed=stream_seed,
                                      **TASKS[task].levels[level], **TASKS[task].fixed)


def _stream_seed(seed: int, split: str, task: str, level: int) -> int:
    # the library seeds item i with Random(seed + i): hash, so seeds s and s+1 do not overlap
    digest = hashlib.sha256(f"{seed}/{split}/{task}/{level}".encode()).digest()
    return int.from_bytes(digest[:6], "big")


def entries(task: str, level: int, split: str, seed: int = 0):
    """(library entry, prompt, answer) of ``split`` for one cell, in stream order (endless)."""
    ds = _dataset(task, level, _stream_seed(seed, split, task, level))
    i = 0
    while True:
        entry = ds[i]
        prompt, answer = TASKS[task].render(entry)
        # the tiny ladder's tokenizer is printable ASCII: words like "tête" are skipped
        if (split_of(prompt) == split and TASKS[task].keep(answer)
                and (prompt + answer).isascii() and (prompt + answer).isprintable()):
            yield entry, prompt, answer
        i += 1


def make_record(task: str, level: int, prompt: str, answer: str, split: str, index: int) -> dict:
    return {
        "data_source": SOURCE_PREFIX + task,
        "ability": task,
        "prompt": [{"role": "user", "content": prompt}],
        "reward_model": {"style": "rule", "ground_truth": answer},
        "extra_info": {"domain": task, "difficulty": level, "split": split,
                       "index": index, "sft_response": MARKER + answer},
    }


def _cell_records(task: str, level: int, split: str, seed: int, count: int) -> list[tuple[str, str]]:
    """``count`` (prompt, answer) pairs of one cell, distinct until the cell's pool is nearly
    exhausted (after 200 draws in a row that hit only prompts seen already, a repeat is
    accepted, as sampling with replacement would)."""
    out, seen, misses = [], set(), 0
    for _, prompt, answer in entries(task, level, split, seed):
        if len(out) == count:
            break
        if prompt in seen and misses < 200:
            misses += 1
            continue
        misses = 0
        seen.add(prompt)
        out.append((prompt, answer))
    return out


def load(split: str, n: int, domains: Sequence[str] = DOMAINS,
         difficulties: Sequence[int] = LEVELS, seed: int = 0) -> list[dict]:
    """Dataset-plugin factory: ``n`` seeded records of ``split``, spread evenly over
    ``domains`` x ``difficulties``."""
    if split not in SPLITS:
        raise ValueError(f"split {split!r}: allowed {', '.join(SPLITS)}")
    bad = [d for d in domains if d not in TASKS] + [lv for lv in difficulties if lv not in LEVELS]
    if bad:
        raise ValueError(f"unknown reasoning_gym domain or level {bad[0]!r}; domains: "
                         f"{', '.join(DOMAINS)}; levels: 1-4")
    cells = [(d, lv) for d in domains for lv in difficulties]
    counts = {c: n // len(cells) + (i < n % len(cells)) for i, c in enumerate(cells)}
    records = [make_record(d, lv, p, a, split, 0)
               for (d, lv) in cells for p, a in _cell_records(d, lv, split, seed, counts[d, lv])]
    random.Random(f"{seed}/{split}").shuffle(records)
    for i, r in enumerate(records):
        r["extra_info"]["index"] = i
    return records


@hookimpl
def agentic_rl_datasets():
    yield DatasetSpec(
        name="reasoning_gym", factory=load, domains=DOMAINS, splits=SPLITS,
        data_sources=(SOURCE_PREFIX,),
        description="reasoning-gym generators in compact prompts (sums, products, letter counts, "
                    "word sorting, bases, fractions), levels 1-4")
