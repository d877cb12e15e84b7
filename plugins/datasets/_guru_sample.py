"""A small folder in Guru-RL-92k's exact layout and schema, for trying the Guru path offline
(no hub access) and for the tests: every domain and the released files' sources, train and
online_eval files, pass-rate columns on some files and not on others, and optionally the
compressed variant.

    python -m plugins.datasets._guru_sample /tmp/guru_sample [--compressed]

Each source's rows have the shapes LLM360's Reasoning360 preprocessing writes
(``data_preprocess/<domain>/<source>.py``): its ``data_source`` names, its prompt
instructions and its ground-truth forms:

- ``math__combined``: LaTeX or integer strings; "Please output the final answer within \\boxed{}."
- ``codegen__leetcode2k``: ``{"functional": "def check(candidate): ...\\n\\ncheck(Solution().f)"}``
  with the imports and ``ListNode``/``TreeNode`` helpers in ``extra_info["prefix"]``;
  ``codegen__taco``: ``{"inputs": [...], "outputs": [...]}`` (stdin/stdout strings) and, for
  function-call problems, ``{"functional": <_inputs/_outputs/_deep_eq test code>}``.
- ``logic__zebra_puzzle`` (data_source ``logic__zebra_puzzle_dataset``): a struct
  ``{"header", "rows"}``; ``logic__ordering_puzzle`` (``logic__ordering_puzzle_dataset``): a
  list of names; ``logic__graph_logical`` (``logic__graph_logical_dataset``): one word;
  ``logic__arcagi1`` and ``logic__barc``: an integer grid, with data_source
  ``simulation__arcagi1`` / ``simulation__barc`` (the names Reasoning360's scorer dispatches).
- ``simulation__codeio``: ``"output": <json>`` or ``"input": {...}`` without outer braces.
- ``table__hitab``: one value or several joined with ``|``; ``table__multihier``: a number string.
- ``stem__web``: data_source ``stem_web``, a free-form answer, ``reward_model`` without ``style``.
"""
from __future__ import annotations

import argparse
import base64
import json
import random
import zlib
from pathlib import Path

LEETCODE_PREFIX = """import random
import functools
import collections
import string
import math
import datetime

from typing import *
from functools import *
from collections import *
from itertools import *
from heapq import *
from bisect import *
from string import *
from operator import *
from math import *

inf = float('inf')

class ListNode:
    def __init__(self, val=0, next=None):
        self.val = val
        self.next = next

def list_node(values: list):
    if not values:
        return None
    head = ListNode(values[0])
    p = head
    for val in values[1:]:
        node = ListNode(val)
        p.next = node
        p = node
    return head

def is_same_list(p1, p2):
    if p1 is None and p2 is None:
        return True
    if not p1 or not p2:
        return False
    return p1.val == p2.val and is_same_list(p1.next, p2.next)

class TreeNode:
    def __init__(self, val=0, left=None, right=None):
        self.val = val
        self.left = left
        self.right = right

def tree_node(values: list):
    if not values:
        return None
    root = TreeNode(values[0])
    i = 1
    queue = deque()
    queue.append(root)
    while queue:
        node = queue.popleft()
        if i < len(values) and values[i] is not None:
            node.left = TreeNode(values[i])
            queue.append(node.left)
        i += 1
        if i < len(values) and values[i] is not None:
            node.right = TreeNode(values[i])
            queue.append(node.right)
        i += 1
    return root

def is_same_tree(p, q):
    if not p and not q:
        return True
    elif not p or not q:
        return False
    elif p.val != q.val:
        return False
    else:
        return is_same_tree(p.left, q.left) and is_same_tree(p.right, q.right)
"""

BOXED = " Please output the final answer within \\boxed{}."
DEEP_EQ_TESTS = """\
_inputs = {inputs}
_outputs = {outputs}
import math
def _deep_eq(a, b, tol=1e-5):
    if isinstance(a, float) or isinstance(b, float):
        return math.isclose(a, b, rel_tol=tol, abs_tol=tol)
    if isinstance(a, (list, tuple)):
        if len(a) != len(b): return False
        return all(_deep_eq(x, y, tol) for x, y in zip(a, b))
    return a == b

for i, o in zip(_inputs, _outputs):
    assert _deep_eq({fn}(*i), o[0])
"""


def _msg(text: str) -> list[dict]:
    return [{"role": "user", "content": text}]


# --- one maker per source: (prompt, ground truth, extra_info fields) -------------------------
def _math(rng: random.Random, i: int):
    a, b = rng.randrange(2, 40), rng.randrange(2, 40)
    if i % 3 == 0:
        return f"Compute ${a} \\times {b}$.{BOXED}", str(a * b), {}
    if i % 3 == 1:
        from math import gcd
        g = gcd(a, a + b)
        return f"Write $\\frac{{{a}}}{{{a + b}}}$ in lowest terms.{BOXED}", f"\\frac{{{a // g}}}{{{(a + b) // g}}}", {}
    return f"Simplify $\\sqrt{{{2 * a * a}}}$.{BOXED}", f"{a}\\sqrt{{2}}", {}


def _leetcode(rng: random.Random, i: int):
    k = rng.randrange(1, 9)
    cases = [[rng.randrange(-20, 50) for _ in range(rng.randrange(1, 5))] for _ in range(3)]
    asserts = "\n".join(f"    assert candidate(nums = {c}, k = {k}) == {[x + k for x in c]}" for c in cases)
    prompt = ("You are an expert Python programmer. You will be given a question (problem specification) "
              "and will generate a correct Python program that matches the specification and passes all "
              "tests.\n\n### Question:\nGiven an integer array nums, return the array with k added to every "
              f"element (here k = {k} in the tests).\n\n### Format:\nYou will use the following starter code to write "
              "the solution to the problem and enclose your code within delimiters.\n```python\nclass Solution:\n"
              "    def addK(self, nums: List[int], k: int) -> List[int]:\n        \n```")
    tests = json.dumps({"functional": f"def check(candidate):\n{asserts}\n\n\ncheck(Solution().addK)"})
    return prompt, tests, {"prefix": LEETCODE_PREFIX, "dataset": "LeetCodeDataset",
                           "question_title": "add-k-to-array", "difficulty": "Easy",
                           "reference": "class Solution:\n    def addK(self, nums, k):\n        return [x + k for x in nums]\n"}


def _taco(rng: random.Random, i: int):
    k = rng.randrange(1, 9)
    if i % 4 == 3:              # a function-call problem (codewars), tested by _deep_eq
        inputs = [[rng.randrange(0, 50)] for _ in range(3)]
        outputs = [[x[0] * k] for x in inputs]
        prompt = ("Solve the programming task below in a Python markdown code block.\n"
                  f"Write a function times_k(n) that returns n times {k}.\n"
                  "You will use the following starter code to write the solution to the problem and enclose "
                  "your code within ```python delimiters.\n```python\ndef times_k(n):\n```")
        tests = json.dumps({"functional": DEEP_EQ_TESTS.format(inputs=inputs, outputs=outputs, fn="times_k")})
        return prompt, tests, {"dataset": "likaixin/TACO-verified", "source": "codewars",
                               "reference": f"def times_k(n):\n    return n * {k}\n"}
    xs = [rng.randrange(0, 50) for _ in range(2)]
    prompt = ("Solve the programming task below in a Python markdown code block.\n"
              f"Read an integer n and print n+{k}.\n"
              "Read the inputs from stdin solve the problem and write the answer to stdout (do not directly "
              "test on the sample inputs). Enclose your code within ```python delimiters.")
    tests = json.dumps({"inputs": [f"{x}\n" for x in xs], "outputs": [f"{x + k}\n" for x in xs]})
    return prompt, tests, {"dataset": "likaixin/TACO-verified", "source": "codeforces",
                           "reference": f"n = int(input())\nprint(n + {k})\n"}


def _zebra(rng: random.Random, i: int):
    names = rng.sample(["british", "polish", "german", "thai", "dutch"], 3)
    pets = rng.sample(["cat", "dog", "guinea-pig", "fish", "horse"], 3)
    grid = {"header": ["Position", "Nationality", "Pet"],
            "rows": [[str(j + 1), names[j], pets[j]] for j in range(3)]}
    clues = [f"The {names[0]} person is in position 1.", f"The {pets[1]} lives in position 2.",
             f"The {names[2]} person keeps the {pets[2]}."]
    prompt = ("Solve the following puzzle where you are given 3 objects and their attributes like job, "
              f"nationality etc. \nThe list of attributes and their unique values are: \nNationality: "
              f"{', '.join(sorted(names))}\nPet: {', '.join(sorted(pets))}. The goal is to determine the correct "
              f"attribute for each object based on the provided clues. The clues are: {chr(10).join(clues)}. "
              "Output the grid in the form of a dictionary with keys as header containing a list of the "
              "attributes and rows denoting each row of the final grid. Please return the final answer in "
              "<answer> </answer> tags, for example <answer> {\"header\": [\"Position\", \"Nationality\", \"Job\"], "
              "\"rows\": [[\"1\", \"british\", \"plumber\"], [\"2\", \"polish\", \"carpenter\"]]} </answer>.")
    return prompt, grid, {"id": str(i), "grid_size": "3x2"}


def _ordering(rng: random.Random, i: int):
    kind, pool = rng.choice([("birds", ["crow", "owl", "robin", "wren", "jay"]),
                             ("people", ["Emma", "Liam", "Wei", "Priya", "Sofia"]),
                             ("fruits", ["passion fruit", "fig", "mango", "lychee", "kiwi"])])
    order = rng.sample(pool, 3)
    prompt = (f"Solve the following puzzle to determine the order of the {kind} from left to right. The {kind} "
              f"are {', '.join(sorted(order))}.. The constraints are: 1. The {order[0]} is the leftmost.\n"
              f"2. The {order[2]} is the rightmost.\n. Please put your answer within <answer> and </answer> "
              "tags, for example <answer> ['pigeon', 'sparrow', 'quail'] </answer>.")
    return prompt, order, {"id": str(i), "num_objects": 3}


def _graph(rng: random.Random, i: int):
    word = "".join(rng.choice("abcdefghijklmnopqrstuvwxyz") for _ in range(6))
    prompt = (f"Given the following list of predicates: If Alice is qpvxe, then Alice is {word}. \n\nIf Alice "
              f"is qpvxe, what is the next step to prove that Alice is {word}? Respond with only the trait of "
              "the next step. Please put your answer within <answer> and </answer> tags, for example <answer> "
              "fdebme </answer>.")
    return prompt, word, {"id": str(i), "lookahead": 1}


def _arc(rng: random.Random, i: int):
    h, w = rng.randrange(2, 4), rng.randrange(2, 4)
    grid = [[rng.randrange(0, 10) for _ in range(w)] for _ in range(h)]
    flipped = [row[::-1] for row in grid]
    prompt = ("You are a world-class puzzle solver with exceptional pattern recognition skills. Your task is to "
              "analyze puzzles, spot patterns, and provide direct solutions.\nGiven input-output grid pairs as "
              "reference examples, carefully observe the patterns to predict the output grid for new test input. "
              "Each pair follows the same transformation rule. Grids are 2D arrays. Here are the input and output "
              f"grids for the reference examples:\n----------------------------------------\nExample 1\nInput: "
              f"[[1, 2]]\nOutput: [[2, 1]]\n\n----------------------------------------\nNow, solve the following "
              f"puzzle based on its input grid by applying the rules you have learned from the training data.\n"
              f"----------------------------------------\n{grid}\n----------------------------------------\n"
              "What is the output grid? Please put your answer within <answer> and </answer> tags, your final "
              "answer should be only the output grid (2d array).\n")
    return prompt, flipped, {}


def _codeio(rng: random.Random, i: int):
    x = rng.randrange(1, 20)
    ref = "def main_solution(x):\n    return {\"double\": x * 2, \"parts\": [x, x * 2]}\n"
    out = {"double": 2 * x, "parts": [x, 2 * x]}
    if i % 2:                  # predict the input
        what, given, gold = "input", f"output:\n{json.dumps(out)}", f"\"input\": {json.dumps({'x': x})}"
        ask = ("Can you predict a feasible input without writing any code? Please reason and put your final "
               "answer in the following json format: \"input\": <your input>, where <your input> should be a "
               "dictionary, even if the there is only one input variable, with keys strictly match the input "
               "variables' names as specified. Please put your answer in \\boxed{} tags.")
    else:
        what, given, gold = "output", f"input:\n{json.dumps({'x': x})}", f"\"output\": {json.dumps(out)}"
        ask = ("Can you predict the output without writing any code? Please reason and put your final answer "
               "in the following json format: \"output\": <your output>, where <your output> should strictly "
               "match the the output requirement as specified. Please put your answer in \\boxed{} tags.")
    prompt = ("You are given a question that requires some input and output variables as follows:\nDouble x.\n"
              "The input and output requirements are as follows:\nInput: x (int). Output: dict with keys "
              f"double (int) and parts (list of int).\nGiven the following {given}\n{ask}\nTip: Here is a "
              f"reference code snippet for this question. You can refer to this code to guide your reasoning "
              f"but not copy spans of code directly.\n{ref}\nPlease output the final answer within ```json```")
    return prompt, gold, {"predict": what}


def _hitab(rng: random.Random, i: int):
    a, b = rng.randrange(10, 99), rng.randrange(10, 99)
    table = f"| year | sales | share |\n|---|---|---|\n| 2020 | {a} | {a / 2:.1f} |\n| 2021 | {b} | {b / 2:.1f} |"
    if i % 2:
        q, gold = "Which sales figures were recorded in 2020 and 2021?", f"{a}|{b}"
    else:
        q, gold = "What was the share in 2021?", f"{b / 2:.1f}"
    prompt = (f"You are given one or more tables. Use the information in the table to answer the following "
              f"question.\n{table}\nThe question is:\n{q}\nPlease output the final answer within \\boxed{{}}. "
              "If there are multiple answers, please output them separated by |.")
    return prompt, gold, {}


def _multihier(rng: random.Random, i: int):
    a, b = rng.randrange(100, 9999), rng.randrange(100, 9999)
    prompt = (f"You are given one or more tables. Use the information in the tables to answer the following "
              f"question.\n| item | 2019 | 2020 |\n| --- | --- | --- |\n| revenue | {a} | {b} |\nThe question "
              "is:\nWhat is the change in revenue from 2019 to 2020?\nPlease output the final answer within \\boxed{}.")
    return prompt, str(b - a), {}


def _stem(rng: random.Random, i: int):
    v, t = rng.randrange(2, 30), rng.randrange(2, 60)
    question = f"A cart accelerates uniformly from rest to {v} m/s in {t} s. What is its acceleration?"
    prompt = ("You are a knowledgeable assistant. Answer the following questions and think step by step. "
              "Please output the final answer within \\boxed{}. " + question)
    return prompt, f"{v / t:.3g} m/s^2", {"question": question, "category": "Physics",
                                          "difficulty": "University", "answer_type": "Float"}


# domain -> [(file source, data_source, ability, maker)], as in the released files
SOURCES = {
    "math": [("combined", "math__combined", "math", _math)],
    "codegen": [("leetcode2k", "codegen__leetcode2k", "codegen", _leetcode),
                ("taco", "codegen__taco", "codegen", _taco)],
    "logic": [("ordering_puzzle", "logic__ordering_puzzle_dataset", "logical_reasoning", _ordering),
              ("zebra_puzzle", "logic__zebra_puzzle_dataset", "logical_reasoning", _zebra),
              ("graph_logical", "logic__graph_logical_dataset", "logical_reasoning", _graph),
              ("arcagi1", "simulation__arcagi1", "reasoning", _arc),
              ("barc", "simulation__barc", "reasoning", _arc)],
    "simulation": [("codeio", "simulation__codeio", "coding-inference", _codeio)],
    "table": [("hitab", "table__hitab", "table", _hitab), ("multihier", "table__multihier", "table", _multihier)],
    "stem": [("web", "stem_web", "QA", _stem)],
}
MAKERS = {d: (srcs[0][0], srcs[0][3]) for d, srcs in SOURCES.items()}   # the first source per domain
WITH_PASS_RATES = ("math", "logic", "table")   # the others must be graded by the policy


def rows(domain: str, n: int, seed: int, compressed: bool = False, source: str | None = None) -> list[dict]:
    """``n`` rows of one source (default: the domain's first) in the released schema."""
    src, data_source, ability, make = next(s for s in SOURCES[domain] if source in (None, s[0]))
    rng = random.Random(f"{domain}/{src}/{seed}")
    out = []
    for i in range(n):
        prompt, gt, fields = make(rng, i)
        rm = {"ground_truth": gt} if data_source == "stem_web" else {"style": "rule", "ground_truth": gt}
        extra = {"split": "train", "index": i, **fields}
        row = {"data_source": data_source, "prompt": _msg(prompt), "ability": ability,
               "apply_chat_template": True, "reward_model": rm, "extra_info": extra}
        if domain in WITH_PASS_RATES:
            row["qwen2.5_7b_pass_rate"] = round(rng.random(), 3)
            row["qwen3_30b_pass_rate"] = round(rng.random(), 3)
        if compressed:
            row["reward_model"] = _pack(rm) if i % 2 else json.dumps(rm)
            row["extra_info"] = _pack(extra) if i % 2 else json.dumps(extra)
        out.append(row)
    return out


def _pack(obj) -> str:
    return base64.b64encode(zlib.compress(json.dumps(obj).encode())).decode()


def write(root: Path, n_train: int = 40, n_eval: int = 12, compressed: bool = False,
          domains=tuple(SOURCES), eval_domains=None) -> Path:
    """Write ``train/`` and ``online_eval/`` parquet files (``n_train`` / ``n_eval`` rows per
    source file); returns ``root``."""
    import pyarrow as pa
    import pyarrow.parquet as pq
    root = Path(root)
    eval_domains = domains if eval_domains is None else eval_domains
    for folder, n, doms, seed in (("train", n_train, domains, 0), ("online_eval", n_eval, eval_domains, 1)):
        (root / folder).mkdir(parents=True, exist_ok=True)
        for d in doms:
            for src, *_ in SOURCES[d]:
                size = f"{n / 1000:.1f}k" if n >= 1000 else str(n)
                pq.write_table(pa.Table.from_pylist(rows(d, n, seed, compressed, source=src)),
                               root / folder / f"{d}__{src}_{size}.parquet")
    return root


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("root")
    ap.add_argument("--compressed", action="store_true", help="write the compressed variant")
    ap.add_argument("--n-train", type=int, default=40)
    ap.add_argument("--n-eval", type=int, default=12)
    args = ap.parse_args()
    root = write(Path(args.root), args.n_train, args.n_eval, args.compressed)
    print(f"wrote a Guru-format sample to {root}")


if __name__ == "__main__":
    main()
