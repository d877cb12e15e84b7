"""Verifiable synthetic tasks: the CPU default dataset.

Seven domains with graded difficulty, seeded generation and disjoint train / eval splits:

- ``arith``: a sum, d+d (level 1), dd+d (2), dd+dd (3), ddd+dd (4): ``"47+5="`` -> ``"52"``
- ``sort``: sort 2L+1 digits at level L, ``"s:31425="`` -> ``"12345"``
- ``rev``:  reverse 2L+2 letters at level L, ``"r:abcd="`` -> ``"dcba"``
- ``mul``:  a product, d*d (level 1; factors from 2), dd*d (2), ddd*d (3), dd*dd (4): ``"7*8="`` -> ``"56"``
- ``max``:  the largest of L+1 numbers of 1, 2, 2, 3 digits, ``"m:47,52,18="`` -> ``"52"``
- ``rot``:  shift L+2 letters of a-j by a key of 1, 1-3, 1-5, 1-9 (cyclic), ``"k3:abj="`` -> ``"dec"``
- ``pad``:  ``arith``'s sums in fixed width: operands zero-padded to the level's widest operand
  (1, 2, 2, 3 digits) and the answer to one digit more, ``"47+05="`` -> ``"052"`` (every
  answer digit sits at a fixed position; the embedded demo's task)

``sft_noise`` (``data.sft_noise``, default 0): the share of worked examples whose answer has
one slip, a character changed to another of the domain's alphabet, as a teacher that errs
now and then would write. Which records slip, and how, is fixed by the record (its domain and
prompt), so a record's ``sft_response`` is the same in every run; ``reward_model`` always
holds the right answer. RL against the verifier can correct what SFT on such data teaches
(the embedded demo's setting); SFT continued on the same data cannot.

A response ends with the final-answer marker and the answer, ``"#52"``; the rule verifier
(``plugins/rewards/synthetic.py``) scores format (marker present, answer well formed) and
correctness separately.

Records use Guru-RL-92k's field names so that one code path serves both::

    {"data_source": "synthetic__arith", "ability": "arith",
     "prompt": [{"role": "user", "content": "47+5="}],
     "reward_model": {"style": "rule", "ground_truth": "52"},
     "extra_info": {"domain": "arith", "difficulty": 2, "split": "train", "index": 0,
                    "sft_response": "#52"}}

Which split a prompt belongs to is a function of the prompt text alone (a hash), so train and
eval never share a prompt whatever the seeds and sizes.
"""
from __future__ import annotations

import hashlib
import random
from collections.abc import Callable, Sequence

from core.hookspecs import hookimpl
from core.specs import DatasetSpec

MARKER = "#"
SOURCE_PREFIX = "synthetic__"
EVAL_FRACTION = 0.15
_LETTERS = "abcdefghij"


def _arith(rng: random.Random, level: int) -> tuple[str, str]:
    if level == 1:
        terms = [rng.randrange(10), rng.randrange(10)]
    elif level == 2:
        terms = [rng.randrange(10, 100), rng.randrange(10)]
    elif level == 3:
        terms = [rng.randrange(10, 100), rng.randrange(10, 100)]
    else:
        terms = [rng.randrange(100, 1000), rng.randrange(10, 100)]
    return "+".join(map(str, terms)) + "=", str(sum(terms))


def _sort(rng: random.Random, level: int) -> tuple[str, str]:
    digits = [str(rng.randrange(10)) for _ in range(2 * level + 1)]
    return f"s:{''.join(digits)}=", "".join(sorted(digits))


def _rev(rng: random.Random, level: int) -> tuple[str, str]:
    letters = "".join(rng.choice(_LETTERS) for _ in range(2 * level + 2))
    return f"r:{letters}=", letters[::-1]


def _mul(rng: random.Random, level: int) -> tuple[str, str]:
    a_digits, b_digits = {1: (1, 1), 2: (2, 1), 3: (3, 1), 4: (2, 2)}[level]
    a, b = (rng.randrange(10 ** (d - 1) if d > 1 else 2, 10 ** d) for d in (a_digits, b_digits))
    return f"{a}*{b}=", str(a * b)


def _max(rng: random.Random, level: int) -> tuple[str, str]:
    digits = {1: 1, 2: 2, 3: 2, 4: 3}[level]
    nums = [rng.randrange(10 ** (digits - 1) if digits > 1 else 0, 10 ** digits) for _ in range(level + 1)]
    return "m:" + ",".join(map(str, nums)) + "=", str(max(nums))


def _rot(rng: random.Random, level: int) -> tuple[str, str]:
    key = rng.randrange(1, {1: 2, 2: 4, 3: 6, 4: 10}[level])     # keys 1, 1-3, 1-5, 1-9
    letters = "".join(rng.choice(_LETTERS) for _ in range(level + 2))
    shifted = "".join(_LETTERS[(_LETTERS.index(c) + key) % len(_LETTERS)] for c in letters)
    return f"k{key}:{letters}=", shifted


def _pad(rng: random.Random, level: int) -> tuple[str, str]:
    prompt, answer = _arith(rng, level)
    width = {1: 1, 2: 2, 3: 2, 4: 3}[level]
    a, b = prompt.rstrip("=").split("+")
    return f"{a.zfill(width)}+{b.zfill(width)}=", answer.zfill(width + 1)


# new domains go at the end: a config's records depend only on its own domains, so adding
# one leaves every existing selection (and the SFT bases cached for it) unchanged
GENERATORS: dict[str, Callable[[random.Random, int], tuple[str, str]]] = {
    "arith": _arith, "sort": _sort, "rev": _rev, "mul": _mul, "max": _max, "rot": _rot,
    "pad": _pad}
DOMAINS = tuple(GENERATORS)
LEVELS = (1, 2, 3, 4)
SPLITS = ("train", "eval")


def split_of(prompt: str) -> str:
    """The split a prompt belongs to; a hash of its text, so splits are always disjoint."""
    h = int.from_bytes(hashlib.sha1(prompt.encode()).digest()[:4], "big") / 2**32
    return "eval" if h < EVAL_FRACTION else "train"


def make_record(domain: str, level: int, prompt: str, answer: str, split: str,
                index: int) -> dict:
    return {
        "data_source": SOURCE_PREFIX + domain,
        "ability": domain,
        "prompt": [{"role": "user", "content": prompt}],
        "reward_model": {"style": "rule", "ground_truth": answer},
        "extra_info": {"domain": domain, "difficulty": level, "split": split,
                       "index": index, "sft_response": MARKER + answer},
    }


_ALPHABETS = {"sort": "0123456789", "rev": _LETTERS, "rot": _LETTERS}


def slip(record: dict) -> str:
    """The record's answer with one character changed (seeded by the record's domain and
    prompt); a number keeps a non-zero leading digit unless it is zero-padded (``pad``)."""
    domain, answer = record["extra_info"]["domain"], record["reward_model"]["ground_truth"]
    rng = random.Random(f"slip/{domain}/{record['prompt'][-1]['content']}")
    i = rng.randrange(len(answer))
    alphabet = _ALPHABETS.get(domain, "0123456789")
    lead = i == 0 and len(answer) > 1 and domain not in ("pad",) + tuple(_ALPHABETS)
    choices = [c for c in alphabet if c != answer[i] and not (lead and c == "0")]
    if answer[i] == "-" or not choices:       # a sign, or nothing to change it to: slip elsewhere
        return answer + answer[-1]
    return answer[:i] + rng.choice(choices) + answer[i + 1:]


def add_noise(records: list[dict], sft_noise: float) -> list[dict]:
    """Records whose ``sft_response`` slips with probability ``sft_noise`` (fixed per record)."""
    if not sft_noise:
        return records
    out = []
    for r in records:
        draw = random.Random(f"noise/{r['extra_info']['domain']}/{r['prompt'][-1]['content']}").random()
        if draw < sft_noise:
            r = {**r, "extra_info": {**r["extra_info"], "sft_response": MARKER + slip(r), "slip": True}}
        out.append(r)
    return out


def generate(n: int, split: str, domains: Sequence[str] = DOMAINS,
             levels: Sequence[int] = LEVELS, seed: int = 0) -> list[dict]:
    """``n`` records of ``split``, spread evenly over ``domains`` x ``levels`` (seeded).

    Within one (domain, level) cell prompts are distinct until the cell's pool is (nearly)
    exhausted (single-digit sums have only 100): after 200 draws that hit only prompts seen
    already, a repeat is accepted, as sampling with replacement would.
    """
    if split not in SPLITS:
        raise ValueError(f"split {split!r}: allowed {', '.join(SPLITS)}")
    bad = [d for d in domains if d not in GENERATORS]
    if bad:
        raise ValueError(f"unknown synthetic domain {bad[0]!r}; allowed: {', '.join(DOMAINS)}")
    cells = [(d, lv) for d in domains for lv in levels]
    rng = random.Random(f"{seed}/{split}")
    records: list[dict] = []
    seen: dict[tuple[str, int], set[str]] = {cell: set() for cell in cells}
    for i in range(n):
        domain, level = cells[i % len(cells)]
        for attempt in range(2000):
            prompt, answer = GENERATORS[domain](rng, level)
            if split_of(prompt) == split and (prompt not in seen[domain, level] or attempt > 200):
                break
        seen[domain, level].add(prompt)
        records.append(make_record(domain, level, prompt, answer, split, i))
    rng.shuffle(records)
    return records


def load(split: str, n: int, domains: Sequence[str] = DOMAINS,
         difficulties: Sequence[int] = LEVELS, seed: int = 0, sft_noise: float = 0.0) -> list[dict]:
    """Dataset-plugin factory: ``n`` seeded records of one split, ``sft_noise`` of their
    worked examples with a slip (the answers to score against stay right)."""
    return add_noise(generate(n, split, domains, difficulties, seed), sft_noise)


@hookimpl
def agentic_rl_datasets():
    yield DatasetSpec(
        name="synthetic", factory=load, domains=DOMAINS, splits=SPLITS, data_sources=(SOURCE_PREFIX,),
        options=("sft_noise",),
        description="seeded verifiable tasks (sums, digit sorting, string reversal, products, maxima, "
                    "letter shifts, fixed-width sums), levels 1-4")
