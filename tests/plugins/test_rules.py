"""Rule-complexity tasks (plugins/datasets/rules.py) and the composite reward
(plugins/rewards/composite.py): exact answers checked by independent solvers, splits, prompt
sizes, every reward level on a table of responses, the no-hack property, option errors."""
import itertools
import random
import re

import pytest

from core import config
from core.errors import ConfigError
from core.protocols import RewardItem, score_items
from plugins.datasets.rules import (ANSWER_FORMS, FAMILIES, LEVELS, MAX_ANSWER, MAX_PROMPT,
                                    generate, load, split_of)
from plugins.datasets.synthetic import generate as synthetic_generate
from plugins.rewards.composite import make_composite
from plugins.rewards.synthetic import SyntheticVerifier

CELLS = [(f, lv) for f in FAMILIES for lv in LEVELS]


def records(family, level, n=40, split="train", seed=0):
    return generate(n, split, (family,), (level,), seed=seed)


def prompt(r):
    return r["prompt"][0]["content"]


def truth(r):
    return r["reward_model"]["ground_truth"]


# --- independent solvers ------------------------------------------------------------------

def solve_expr(text):
    assert re.fullmatch(r"[0-9+\-*()]+=", text), text
    return str(eval(text[:-1]))                       # digits and operators only


def solve_rewrite(text):
    rules, word = text[:-1].split(":")
    for rule in rules.split(","):
        lhs, rhs = rule.split(">")
        assert lhs in word, f"rule {rule} does not fire in {text}"
        word = word.replace(lhs, rhs)
    return word


def clue_holds(clue, row):
    if m := re.fullmatch(r"([A-Z])([<-])([A-Z])", clue):
        a, op, b = m.groups()
        return row.index(a) < row.index(b) if op == "<" else row.index(a) + 1 == row.index(b)
    a, neg, pos = re.fullmatch(r"([A-Z])(!?)(\d)", clue).groups()
    return (row.index(a) == int(pos) - 1) != bool(neg)


def order_solutions(items, clues):
    return ["".join(row) for row in itertools.permutations(items)
            if all(clue_holds(c, row) for c in clues)]


# --- tasks --------------------------------------------------------------------------------

@pytest.mark.parametrize("family,level", CELLS)
def test_answers_match_independent_solvers(family, level):
    for r in records(family, level, n=60):
        text, answer = prompt(r), truth(r)
        assert r["data_source"] == "rules__" + family and r["extra_info"]["domain"] == family
        assert r["extra_info"]["difficulty"] == level
        assert r["extra_info"]["sft_response"] == "#" + answer
        if family == "expr":
            assert solve_expr(text) == answer
        elif family == "rewrite":
            assert solve_rewrite(text) == answer
            assert text.count(">") == level == r["extra_info"]["n_rules"]
        else:
            items, clues = text[:-1].split(":")
            clues = clues.split(",")
            assert len(items) == level + 2 and len(clues) == r["extra_info"]["n_rules"]
            assert order_solutions(items, clues) == [answer]           # unique
            for i in range(len(clues)):                                # and minimal
                assert len(order_solutions(items, clues[:i] + clues[i + 1:])) > 1, text


def test_levels_add_rules():
    for r in records("expr", 3, n=60):     # precedence matters: left-to-right reading is wrong
        a, op, b, _, c = prompt(r)[:5]
        assert str(eval(f"({a}{op}{b})*{c}")) != truth(r)
    for r in records("expr", 4, n=60):     # so do the parentheses
        text = prompt(r)[:-1]
        assert "(" in text and "*" in text and str(eval(re.sub("[()]", "", text))) != truth(r)
    kinds = {1: "<", 2: r"\d", 3: "!", 4: "-"}
    for level, newest in kinds.items():    # every puzzle uses its level's newest clue kind
        for r in records("order", level, n=30):
            assert re.search(newest, prompt(r).split(":")[1]), prompt(r)
    mean = {lv: sum(r["extra_info"]["n_rules"] for r in records("order", lv, 60)) / 60
            for lv in LEVELS}
    assert mean[1] < mean[2] < mean[3] < mean[4]


def test_prompts_short_and_answers_fit_the_response_budget():
    for family, level in CELLS:
        recs = records(family, level, n=100)
        longest = max(len(prompt(r)) for r in recs)
        assert longest <= (12 if level == 1 else MAX_PROMPT), (family, level, longest)
        assert all(1 <= len(truth(r)) <= MAX_ANSWER for r in recs)


def test_generation_is_seeded_and_splits_are_disjoint():
    assert generate(120, "train", seed=3) == generate(120, "train", seed=3)
    assert generate(120, "train", seed=3) != generate(120, "train", seed=4)
    recs = generate(120, "train", seed=0)
    assert {(r["extra_info"]["domain"], r["extra_info"]["difficulty"]) for r in recs} == set(CELLS)
    train = {prompt(r) for r in generate(2400, "train", seed=0)}
    evals = generate(600, "eval", seed=0)
    assert all(split_of(prompt(r)) == "eval" and r["extra_info"]["split"] == "eval" for r in evals)
    assert not train & {prompt(r) for r in evals}


def test_factory_selects_and_rejects():
    recs = load("eval", 20, domains=("order",), difficulties=(2,), seed=1)
    assert len(recs) == 20 and {r["data_source"] for r in recs} == {"rules__order"}
    with pytest.raises(ValueError, match="'sum'; allowed: expr, rewrite, order"):
        load("train", 5, domains=("sum",))
    with pytest.raises(ValueError, match="level 5; allowed: 1, 2, 3, 4"):
        load("train", 5, difficulties=(5,))


def near_misses(family, answer, rng):
    """Well-formed wrong answers: one part changed, a part missing or added, a swap."""
    alphabet = {"expr": "0123456789", "rewrite": "abcd", "order": "ABCDEFGH"}[family]
    i = rng.randrange(len(answer.lstrip("-"))) + answer.startswith("-")
    out = {answer[:i] + rng.choice(alphabet.replace(answer[i], "")) + answer[i + 1:],
           answer + alphabet[1], answer[:-1] if len(answer) > 1 else answer + answer}
    if family == "expr":
        out |= {str(int(answer) + 1), str(int(answer) - 10), str(-int(answer) or 7)}
    elif len(set(answer)) > 1:
        j = next(k for k in range(len(answer) - 1) if answer[k] != answer[k + 1])
        out.add(answer[:j] + answer[j + 1] + answer[j] + answer[j + 2:])
    if family == "expr":
        out = {o.lstrip("0") or "0" for o in out}
    return {o for o in out if o != answer and re.fullmatch(ANSWER_FORMS[family][0], o)}


@pytest.mark.parametrize("family,level", CELLS)
def test_verifier_right_near_miss_and_malformed(family, level):
    reward, rng = make_composite(level=3), random.Random(0)
    source = "rules__" + family
    for r in records(family, level, n=20):
        answer = truth(r)
        right = reward(source, "#" + answer, answer)
        assert (right.acc, right.format, right.score, right.pred) == (1.0, 1.0, 1.0, answer)
        assert reward(source, "think 1+1#" + answer + " ", answer).acc == 1.0   # last marker
        for miss in near_misses(family, answer, rng):
            s = reward(source, "#" + miss, answer)
            assert s.acc == 0.0 and s.format == 1.0 and 0 < s.score < 1, (answer, miss, s)
        wrong_case = answer.swapcase() if family != "expr" else "+" + answer
        for bad in (answer, "#", "#" + answer + "?", "#" + wrong_case, "#" + answer + "#",
                    "#0" + answer.lstrip("-"), "#" + answer + ",1"):
            s = reward(source, bad, answer)
            assert s.acc == 0.0 and s.format == 0.0 and s.score == 0.0, (answer, bad, s)


# --- the composite reward -----------------------------------------------------------------

W = {"c": 1.0, "f": 0.2, "p": 0.5, "l": 0.3}


def lv(level, c=0.0, f=0.0, p=0.0, l=0.0):
    """Expected score of a level preset for these part values (weights normalised)."""
    parts = [("c", c), ("f", f), ("p", p), ("l", l)][:level]
    return sum(W[k] * v for k, v in parts) / sum(W[k] for k, _ in parts)


TABLE = [   # (data_source, response, truth, [expected score at level 1, 2, 3, 4])
    ("rules__expr", "#14", "14", [1, 1, 1, 1]),
    ("rules__expr", "#15", "14", [lv(n, f=1, p=1 / 2, l=1) for n in LEVELS]),
    ("rules__expr", "#114", "14", [lv(n, f=1, p=2 / 3, l=1) for n in LEVELS]),
    ("rules__expr", "#-14", "14", [lv(n, f=1, p=2 / 3, l=1) for n in LEVELS]),
    ("rules__expr", "#4", "-14", [lv(n, f=1, p=1 / 3, l=1) for n in LEVELS]),
    ("rules__expr", "so 12+2 = 14 #14", "14", [1, 1, 1, lv(4, c=1, f=1, p=1, l=0.4)]),
    ("rules__expr", "x" * 20 + "#14", "14", [1, 1, 1, lv(4, c=1, f=1, p=1, l=0)]),
    ("rules__expr", "x" * 12 + "#15", "14", [0, lv(2, f=1), lv(3, f=1, p=.5), lv(4, f=1, p=.5, l=.5)]),
    ("rules__expr", "14", "14", [0, 0, 0, 0]),
    ("rules__expr", "#014", "14", [0, 0, 0, 0]),
    ("rules__expr", "", "14", [0, 0, 0, 0]),
    ("rules__rewrite", "#cbbbd", "cbbbd", [1, 1, 1, 1]),
    ("rules__rewrite", "#cbbb", "cbbbd", [lv(n, f=1, p=4 / 5, l=1) for n in LEVELS]),
    ("rules__rewrite", "#bbbcd", "cbbbd", [lv(n, f=1, p=3 / 5, l=1) for n in LEVELS]),
    ("rules__rewrite", "#CBBBD", "cbbbd", [0, 0, 0, 0]),
    ("rules__order", "#EGB", "EGB", [1, 1, 1, 1]),
    ("rules__order", "#EBG", "EGB", [lv(n, f=1, p=1 / 3, l=1) for n in LEVELS]),
    ("rules__order", "#GBE", "EGB", [lv(n, f=1, p=0, l=1) for n in LEVELS]),
    ("rules__order", "#E,G,B", "EGB", [0, 0, 0, 0]),
    ("synthetic__arith", "#52", "52", [1, 1, 1, 1]),
    ("synthetic__arith", "#53", "52", [lv(n, f=1, p=1 / 2, l=1) for n in LEVELS]),
    ("synthetic__sort", "#0123", "0124", [lv(n, f=1, p=3 / 4, l=1) for n in LEVELS]),
    ("synthetic__rev", "#dcbaabcdef", "dcbaabcdef", [1, 1, 1, lv(4, c=1, f=1, p=1, l=0.9)]),
    ("synthetic__rev", "#dc1a", "dcba", [0, 0, 0, 0]),
]


@pytest.mark.parametrize("source,response,answer,expected", TABLE)
def test_composite_levels_on_a_table(source, response, answer, expected):
    for level, want in zip(LEVELS, expected):
        s = make_composite(level=level)(source, response, answer)
        assert s.score == pytest.approx(want), (level, s)
        assert s.acc == expected[0]          # level 1 is plain correctness


def test_acc_is_exact_correctness_at_every_level_and_batch_matches():
    items = [RewardItem(src, resp, ans, None) for src, resp, ans, _ in TABLE]
    accs = [make_composite(level=1)(*it).acc for it in items]
    for level in LEVELS:
        reward = make_composite(level=level)
        batch = score_items(reward, items)
        assert [s.acc for s in batch] == accs
        assert batch == [reward(*it) for it in items]


def test_level_one_equals_the_synthetic_verifier():
    rng, ours, theirs = random.Random(1), make_composite(format_weight=0.0), SyntheticVerifier()
    for r in synthetic_generate(60, "train", seed=0):
        src, answer = r["data_source"], truth(r)
        for resp in ["#" + answer, answer, "#" + answer[::-1], "#" + answer + "7", "x#" + answer,
                     "".join(rng.choice("#0123456789abcd-") for _ in range(rng.randrange(8)))]:
            a, b = ours(src, resp, answer), theirs(src, resp, answer)
            assert (a.score, a.acc, a.format, a.pred) == (b.score, b.acc, b.format, b.pred)


def random_wrong(rng, answer, family):
    """Random responses, mostly near the right answer in length, form and content."""
    charset = "#0123456789-+abcdABCDEFGH ,\n"
    kind = rng.randrange(4)
    if kind == 0:
        return "".join(rng.choice(charset) for _ in range(rng.randrange(30)))
    body = list(answer)
    for _ in range(rng.randrange(1, 3)):
        op = rng.randrange(3)
        i = rng.randrange(len(body) + (op == 1))
        if op == 0 and body:
            body[i % len(body)] = rng.choice(charset[1:-3])
        elif op == 1:
            body.insert(i, rng.choice(charset[1:-3]))
        elif len(body) > 1:
            del body[i % len(body)]
    prefix = "".join(rng.choice(charset[1:]) for _ in range(rng.choice([0, 0, 3, 12])))
    return prefix + "#" + "".join(body) + rng.choice(["", "", " ", "#"])


@pytest.mark.parametrize("options", [{"level": n} for n in LEVELS] + [
    {"parts": ["correct", "format", "partial", "length"],
     "weights": {"correct": 0.1, "format": 3.0, "partial": 5.0, "length": 0.09}, "length_budget": 3}])
def test_no_hack_wrong_answers_never_reach_right_ones(options):
    reward, rng = make_composite(**options), random.Random(7)
    sources = [(f"rules__{f}", f, r) for f, lv_ in CELLS for r in records(f, lv_, n=8)]
    sources += [(r["data_source"], "synthetic", r) for r in synthetic_generate(24, "train", seed=2)]
    for source, family, r in sources:
        answer = truth(r)
        rights = [reward(source, p + "#" + answer, answer).score for p in ("", "ok ", "x" * 25)]
        worst_right = min(rights)
        for _ in range(60):
            resp = random_wrong(rng, answer, family)
            s = reward(source, resp, answer)
            if s.acc:
                continue
            assert s.score < worst_right, (options, answer, resp, s)
            # a right answer of the same length and form (the wrong one's text, answer swapped)
            same = resp.rsplit("#", 1)[0] + "#" + answer if "#" in resp else None
            if same is not None and len(same) == len(resp):
                assert s.score < reward(source, same, answer).score


BAD_OPTIONS = [   # (options, key named, fragments of the message)
    ({"level": 5}, "reward.options.level", ["got 5", "allowed: 1, 2, 3, 4"]),
    ({"level": "2"}, "reward.options.level", ["got '2'", "allowed: 1, 2, 3, 4"]),
    ({"levels": 2}, "reward.options.levels", ["not an option", "allowed: level, parts, weights, length_budget"]),
    ({"parts": ["correct", "style"]}, "reward.options.parts", ["'style'", "allowed: correct, format, partial, length"]),
    ({"parts": ["format", "length"]}, "reward.options.parts", ["must include 'correct'"]),
    ({"parts": "correct"}, "reward.options.parts", ["non-empty list"]),
    ({"level": 2, "parts": ["correct"]}, "reward.options.parts", ["either `level` or `parts`"]),
    ({"level": 2, "weights": {"partial": 1}}, "reward.options.weights.partial", ["allowed: correct, format"]),
    ({"level": 3, "weights": {"format": -1}}, "reward.options.weights.format", [">= 0"]),
    ({"level": 4, "weights": {"correct": 0.3}}, "reward.options.weights.correct", ["> the length weight (0.3)"]),
    ({"parts": ["correct"], "weights": {"correct": 0}}, "reward.options.weights.correct", ["must be > 0"]),
    ({"level": 4, "length_budget": 0}, "reward.options.length_budget", ["integer >= 1"]),
    ({"level": 4, "length_budget": 9.5}, "reward.options.length_budget", ["integer >= 1"]),
]


@pytest.mark.parametrize("options,key,fragments", BAD_OPTIONS)
def test_bad_options_get_one_message(options, key, fragments):
    with pytest.raises(ConfigError) as err:
        make_composite(**options)
    msg = str(err.value)
    assert err.value.key == key and f"`{key}`" in msg and "\n" not in msg
    for fragment in fragments:
        assert fragment in msg, msg
    with pytest.raises(ConfigError, match="reward.format_weight"):
        make_composite(format_weight=-0.5)


def test_options_shape_the_reward():
    assert make_composite().weights == {"correct": 1.0}
    assert make_composite(format_weight=0.1).weights == {"correct": 1.0, "format": 0.1}
    custom = make_composite(parts=["correct", "partial"], weights={"partial": 1.0})
    assert custom.weights == {"correct": 1.0, "partial": 1.0}
    assert custom("rules__expr", "#15", "14").score == pytest.approx(0.25)
    short = make_composite(level=4, length_budget=2)
    assert short("rules__expr", "#14", "14").score == pytest.approx(1.7 / 2 + 0.3 * 0.5 / 2)
    with pytest.raises(ValueError, match="cannot score data_source 'guru__math'"):
        make_composite()("guru__math", "#1", "1")


def test_plugins_register_and_the_config_selects_them():
    cfg = config.load("smoke", ["data.dataset=rules", "data.domains=[expr,rewrite,order]",
                               "data.difficulties=[1,4]", "reward.name=composite_l3"])
    assert cfg.data.dataset == "rules" and cfg.reward.name == "composite_l3"
    with pytest.raises(ConfigError) as err:
        config.load("smoke", ["data.dataset=rules", "data.domains=[expr]"])   # reward synthetic
    assert "composite" in str(err.value) and "rules__" in str(err.value)
    from core.plugins import registry
    spec = registry().get("rewards", "composite_l4")
    assert spec.factory().weights == {"correct": 1.0, "format": 0.2, "partial": 0.5, "length": 0.3}
