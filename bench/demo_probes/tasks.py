"""Task variants for the probes. Records use the project's record format (synthetic plugin);
held-out splits use its hash (plugins.datasets.synthetic.split_of) so eval is never trained on.

Demonstration styles (SFT responses) for an arith record with answer A (a string):
- direct:  "#A"
- rev:     A reversed, then "#A"       (least-significant digit first: carries flow forward)
- noisy(p): "#A'" where A' is A with one digit changed, with probability p
"""
from __future__ import annotations

import random

from plugins.datasets.synthetic import generate, make_record, split_of


def arith(split, n, levels=(2, 3), seed=0):
    return generate(n, split, ("arith",), tuple(levels), seed)


def _terms(rng, digits):
    a, b = digits
    lo = lambda d: 10 ** (d - 1) if d > 1 else 0
    return [rng.randrange(lo(a), 10 ** a), rng.randrange(lo(b), 10 ** b)]


def arith_digits(split, n, shapes, seed=0):
    """Sums whose operand digit counts are drawn from ``shapes`` (e.g. [(3, 3), (3, 2)]),
    spread evenly; distinct prompts per shape; level = index in shapes + 1."""
    rng = random.Random(f"{seed}/{split}/digits")
    recs, seen = [], set()
    for i in range(n):
        k = i % len(shapes)
        for attempt in range(5000):
            t = _terms(rng, shapes[k])
            p = "+".join(map(str, t)) + "="
            if split_of(p) == split and (p not in seen or attempt > 200):
                break
        seen.add(p)
        recs.append(make_record("arith", k + 1, p, str(sum(t)), split, i))
    rng.shuffle(recs)
    return recs


def answer(r):
    return r["reward_model"]["ground_truth"]


def direct(r, rng=None):
    return "#" + answer(r)


def rev(r, rng=None):
    a = answer(r)
    return a[::-1] + "#" + a


def mix(p_rev):
    def f(r, rng):
        return rev(r) if rng.random() < p_rev else direct(r)
    return f


def corrupt(a, rng):
    i = rng.randrange(len(a))
    choices = [d for d in "0123456789" if d != a[i] and not (i == 0 and d == "0" and len(a) > 1)]
    return a[:i] + rng.choice(choices) + a[i + 1:]


def noisy(p, base=direct):
    def f(r, rng):
        s = base(r)
        if rng.random() < p:
            pre, a = s.rsplit("#", 1)
            s = pre + "#" + corrupt(a, rng)
        return s
    return f


def style_of(text):
    if text.startswith("#"):
        return "direct"
    if "#" in text:
        return "scratch"
    return "none"


def nocarry_sum(prompt):
    """Digit-wise sum mod 10 (carries dropped): the answer of a teacher that forgets to carry."""
    a, b = prompt.rstrip("=").split("+")
    n = max(len(a), len(b))
    a, b = a.zfill(n), b.zfill(n)
    s = "".join(str((int(x) + int(y)) % 10) for x, y in zip(a, b)).lstrip("0")
    return s or "0"


def nocarry(r, rng=None):
    return "#" + nocarry_sum(r["prompt"][-1]["content"])


def mix2(p_rev, other):
    """Scratch (rev, always right) with prob p_rev, else the ``other`` style."""
    def f(r, rng):
        return rev(r) if rng.random() < p_rev else other(r, rng)
    return f


def noisy_rev(p):
    """LSB-first worked answer; with prob p the teacher slips on one digit (scratch and answer agree)."""
    def f(r, rng):
        a = answer(r)
        if rng.random() < p:
            a = corrupt(a, rng)
        return a[::-1] + "#" + a
    return f


def arith_padded(split, n, levels=(2, 3), seed=0, width=2, answer_width=3):
    """The plugin's sums with zero-padded operands (and answer): "47+05=" -> "052"."""
    out = []
    for r in generate(n, split, ("arith",), tuple(levels), seed):
        a, b = r["prompt"][-1]["content"].rstrip("=").split("+")
        p = f"{a.zfill(width)}+{b.zfill(width)}="
        ans = r["reward_model"]["ground_truth"].zfill(answer_width)
        out.append(make_record("arith", r["extra_info"]["difficulty"], p, ans, split, r["extra_info"]["index"]))
    return out


def fixed_noisy(p, seed=0):
    """Noise fixed per record (as a dataset plugin would write sft_response once): record i's
    demonstration is corrupted iff its own seeded draw < p."""
    def f(r, rng=None):
        a = answer(r)
        rr = random.Random(f"sftnoise/{seed}/{r['extra_info']['index']}")
        if rr.random() < p:
            a = corrupt(a, rr)
        return "#" + a
    return f
