"""Every Guru domain's verifier on the ground-truth shapes Reasoning360's preprocessing
writes and the answer forms its prompts ask for: right answers in each form, wrong answers
that look close, malformed ones, and decoy answers inside ``<think>`` (never read). Each
domain's table is one parametrised test per case, scored in one batch (math-verify in the
worker pool, code in the sandbox), then the same from a thread (where signal.alarm fails)."""
import json
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest

from plugins.datasets import _guru_sample as sample
from plugins.rewards.guru import GuruVerifier, domain_of, last_boxed
from plugins.rewards.sandbox import Limits

R, W, M = 1.0, 0.0, None          # right, wrong (an answer was found), malformed (no answer: format 0)
B = "bare"                        # right, but not in the form the prompt asks for: acc 1, format 0


def think(decoy: str) -> str:
    """A reasoning block holding a decoy answer the verifier must never take."""
    return f"<think>\nLet me try. Maybe {decoy}. Hmm, let me check again.\n</think>\n"


# --- math: "Please output the final answer within \boxed{}." ------------------------------------
MATH = [
    ("825", "So the product is \\boxed{825}.", R),
    ("825", "\\boxed{825.0}", R),
    ("\\frac{9}{34}", "\\boxed{\\dfrac{9}{34}}", R),
    ("\\frac{1}{2}", "so the answer is \\boxed{0.5}", R),
    ("12\\sqrt{2}", "\\boxed{\\sqrt{288}}", R),
    ("\\frac{\\pi}{2}", "\\boxed{\\pi/2}", R),
    ("(1, 2)", "\\boxed{(1,2)}", R),
    ("5", "\\boxed{x = 5}", R),
    ("1000", "\\boxed{1,000}", R),
    ("50\\%", "\\boxed{50}", R),
    ("25", "\\boxed{25\\%}", R),
    ("x^2+1", "\\boxed{1 + x^{2}}", R),
    ("[1, 2)", "\\boxed{[1,2)}", R),
    ("100", "\\boxed{\\$100}", R),
    ("3", think("\\boxed{7}") + "Therefore \\boxed{3}.", R),
    ("3", "The answer is \\boxed 3", R),
    ("\\frac{9}{34}", "\\fbox{\\frac{9}{34}}", R),
    ("2", "First guess \\boxed{5}. No, correcting that: \\boxed{2}", R),
    ("5", "\\boxed{5 \\text{ cm}}", R),
    ("12 \\text{ apples}", "\\boxed{12}", R),
    ("0.5", "\\boxed{50}", W),                             # Reasoning360's prime_math accepts this
    ("825", "\\boxed{826}", W),
    ("\\frac{9}{34}", "\\boxed{0.26}", W),
    ("(1, 2)", "\\boxed{(2, 1)}", W),
    ("7", think("\\boxed{7}") + "Final answer: \\boxed{8}", W),
    ("12\\sqrt{2}", "\\boxed{12\\sqrt{3}}", W),
    ("3", "\\boxed{3.01}", W),
    ("-\\frac{1}{3}", "\\boxed{-0.333}", W),
    ("2t", "\\boxed{2}", W),                               # math-verify's unit stripping would accept
    ("x+2t", "\\boxed{x+2}", W),
    ("7", think("\\boxed{7}") + "I think it is seven.", M),
    ("7", "<think>\nlong reasoning, so far \\boxed{7} and then the response was cut", M),
    ("825", "I multiplied the two numbers and got eight hundred and twenty five in the end.", M),
    ("825", "the answer is 825", B),                             # Reasoning360 reads unboxed answers too
    ("825", think("\\boxed{7}") + "825", B),
    ("\\frac{9}{34}", "**Final answer:** $\\frac{9}{34}$", B),
    ("825", "the answer is 826", W),
    ("825", "\\boxed{825", M),
    ("825", "", M),
    ("825", "\\boxed{}", M),
]

# --- codegen: ```python``` blocks; stdin/stdout and function-call tests -------------------------
STDIO = json.dumps({"inputs": ["2 3\n", "10 -4\n"], "outputs": ["5\n", "6\n"]})
YESNO = json.dumps({"inputs": ["4\n", "7\n"], "outputs": ["YES\n", "NO\n"]})
FLOAT = json.dumps({"inputs": ["3\n"], "outputs": ["0.333333\n"]})
ADD = "a, b = map(int, input().split())\nprint(a + b)\n"
LEET = json.dumps({"functional": "def check(candidate):\n    assert candidate(nums = [2,7,11,15], target = 9) == [0,1]\n"
                                 "    assert candidate(nums = [3,2,4], target = 6) == [1,2]\n\n\ncheck(Solution().twoSum)"})
TWO_SUM = ("class Solution:\n    def twoSum(self, nums: List[int], target: int) -> List[int]:\n        seen = {}\n"
           "        for i, x in enumerate(nums):\n            if target - x in seen:\n                return [seen[target - x], i]\n"
           "            seen[x] = i\n")
LIST = json.dumps({"functional": "def check(candidate):\n    assert is_same_list(candidate(head = list_node([1,2,3])), list_node([3,2,1]))\n"
                                 "    assert candidate(head = list_node([])) is None\n\n\ncheck(Solution().reverseList)"})
REVERSE = ("class Solution:\n    def reverseList(self, head: Optional[ListNode]) -> Optional[ListNode]:\n        prev = None\n"
           "        while head:\n            head.next, prev, head = prev, head, head.next\n        return prev\n")
ROTATE = json.dumps({"functional": "def check(candidate):\n    nums = [1,2,3,4,5]\n    candidate(nums, 2)\n    assert nums == [4,5,1,2,3]\n\n\ncheck(Solution().rotate)"})
TACO_FN = json.dumps({"functional": sample.DEEP_EQ_TESTS.format(inputs=[[1], [2.5]], outputs=[[3.0], [7.5]], fn="triple")})
LCB = json.dumps({"functional": "def check_maxSum():\n    assert Solution().maxSum([1, 5, 2]) == 5\n    assert Solution().maxSum([7]) == 7\n\ncheck_maxSum()\n"})
PREFIX = {"prefix": sample.LEETCODE_PREFIX}


def py(code: str, lang: str = "python") -> str:
    return f"Here is my solution.\n```{lang}\n{code}```\n"


SYNTAX = py("a, b = map(int, input().split()\nprint(a + b)\n")


CODEGEN = [
    (STDIO, py(ADD), R, {}),
    (STDIO, py(ADD, "py"), R, {}),
    (STDIO, py(ADD, "Python3"), R, {}),
    (STDIO, py(ADD, ""), R, {}),
    (STDIO, think(py("print(5)")) + py(ADD), R, {}),
    (STDIO, py(ADD) + "Example:\n```\n2 3\n```\n", R, {}),                 # the I/O example block is not code
    (STDIO, py("print(5)") + "That was wrong; fixed:\n" + py(ADD), R, {}),
    (STDIO, py("def add(a, b):\n    return a + b\n") + "Then read and print:\n"
            + py("a, b = map(int, input().split())\nprint(add(a, b))\n"), R, {}),      # helper in its own block
    (YESNO, py("n = int(input())\nprint('Yes' if n % 2 == 0 else 'no')\n"), R, {}),
    (FLOAT, py("print(1 / int(input()))\n"), R, {}),
    (STDIO, py("import sys, threading\nsys.setrecursionlimit(10000)\nthreading.stack_size(1 << 24)\n"
               "def main():\n    a, b = map(int, sys.stdin.readline().split())\n    print(a + b)\n"
               "threading.Thread(target=main).start()\n"), R, {}),
    (STDIO, py("a, b = map(int, input().split())\nprint(a + b, end='  \\n\\n')\n"), R, {}),
    (LEET, py(TWO_SUM), R, PREFIX),
    (LIST, py(REVERSE), R, PREFIX),
    (ROTATE, py("class Solution:\n    def rotate(self, nums: List[int], k: int) -> None:\n        nums[:] = nums[-k:] + nums[:-k]\n"), R, PREFIX),
    (TACO_FN, py("def triple(x):\n    return 3 * x\n"), R, {}),
    (LCB, py("class Solution:\n    def maxSum(self, nums: List[int]) -> int:\n        return max(nums)\n"), R, PREFIX),
    (LEET, think(py("class Solution:\n    def twoSum(self, nums, target):\n        return [0, 1]\n")) + py(TWO_SUM), R, PREFIX),
    (STDIO, py("print(5)\n"), W, {}),                                       # hard-codes the first test
    (STDIO, py("a, b = map(int, input().split())\nprint(a * b)\n"), W, {}),
    (STDIO, py(ADD + "raise SystemExit(3)\n"), W, {}),
    (STDIO, py("a, b = map(int, input().split())\nprint(a + b)\nprint(1 / 0)\n"), W, {}),
    (LEET, py("class Solution:\n    def twoSum(self, nums, target):\n        return [1, 0]\n"), W, PREFIX),
    (LEET, think(py(TWO_SUM)) + py("class Solution:\n    def twoSum(self, nums, target):\n        return []\n"), W, PREFIX),
    (TACO_FN, py("def triple(x):\n    return 3 * x + 0.1\n"), W, {}),
    (LIST, py("class Solution:\n    def reverseList(self, head):\n        return head\n"), W, PREFIX),
    (STDIO, SYNTAX, W, {}),                                              # SyntaxError: format 1, wrong
    (STDIO, py(""), W, {}),
    (json.dumps({"pytest": "def test(): pass"}), py(ADD), W, {}),
    (STDIO, "a, b = map(int, input().split()); print(a + b)", M, {}),
    (STDIO, "```python\n" + ADD, M, {}),                                     # unclosed fence
    (STDIO, "<think>\n" + py(ADD), M, {}),                                  # never finished thinking
    (STDIO, "Use `print(sum(map(int, input().split())))`.", M, {}),
]

# --- logic: <answer> ... </answer> ---------------------------------------------------------------
ZEBRA = {"header": ["Position", "Nationality", "Pet"],
         "rows": [["1", "british", "cat"], ["2", "polish", "guinea-pig"], ["3", "thai", "dog"]]}
SWAPPED = {**ZEBRA, "rows": [["1", "polish", "cat"], ["2", "british", "guinea-pig"], ["3", "thai", "dog"]]}
ORDER = ["crow", "owl", "wren"]
PEOPLE = ["Emma", "Liam", "Wei"]
FRUIT = ["fig", "passion fruit", "mango"]
GRID = [[1, 2], [3, 4]]


def tag(x) -> str:
    return f"<answer>{x}</answer>"


Z, O, G, A = "logic__zebra_puzzle_dataset", "logic__ordering_puzzle_dataset", "logic__graph_logical_dataset", "simulation__arcagi1"
LOGIC = [
    (Z, ZEBRA, tag(json.dumps(ZEBRA)), R),
    (Z, ZEBRA, tag(json.dumps({"header": ["Position", "Nationality", "Pet"],
                               "rows": [["1", "British", "Cat"], ["2", "Polish", "Guinea-Pig"], ["3", "Thai", "Dog"]]})), R),
    (Z, ZEBRA, tag(json.dumps({**ZEBRA, "rows": [[1, "british", "cat"], [2, "polish", "guinea-pig"], [3, "thai", "dog"]]})), R),
    (Z, ZEBRA, tag(json.dumps({"header": ["Position", "Pet", "Nationality"],
                               "rows": [["1", "cat", "british"], ["2", "guinea-pig", "polish"], ["3", "dog", "thai"]]})), R),
    (Z, ZEBRA, tag(json.dumps({**ZEBRA, "rows": ZEBRA["rows"][::-1]})), R),
    (Z, ZEBRA, tag("The final grid is " + json.dumps(ZEBRA) + ", which satisfies every clue."), R),
    (Z, ZEBRA, tag(repr(ZEBRA)), R),
    (Z, ZEBRA, tag(json.dumps(ZEBRA).replace("guinea-pig", "guinea pig")), R),
    (Z, ZEBRA, tag(json.dumps(ZEBRA["rows"])), R),
    (Z, ZEBRA, think(tag(json.dumps(SWAPPED))) + tag(json.dumps(ZEBRA)), R),
    (Z, ZEBRA, tag(json.dumps(SWAPPED)), W),
    (Z, ZEBRA, tag(json.dumps({**ZEBRA, "rows": ZEBRA["rows"][:2]})), W),
    (Z, ZEBRA, think(tag(json.dumps(ZEBRA))) + tag(json.dumps(SWAPPED)), W),
    (Z, ZEBRA, "The British person owns the cat.", M),
    (Z, ZEBRA, tag("the British person is first"), M),
    (O, ORDER, tag("['crow', 'owl', 'wren']"), R),
    (O, ORDER, tag("[crow, owl, wren]"), R),
    (O, PEOPLE, tag("['emma', 'liam', 'wei']"), R),                        # Reasoning360 fails names with capitals
    (O, PEOPLE, tag("Emma, Liam, Wei"), R),
    (O, ORDER, tag("The order from left to right: crow, owl, wren"), R),
    (O, ORDER, tag("1. crow\n2. owl\n3. wren"), R),
    (O, FRUIT, tag("[fig, passion fruit, mango]"), R),
    (O, ORDER, think(tag("['owl', 'crow', 'wren']")) + tag('["crow", "owl", "wren"]'), R),
    (O, ORDER, tag("['owl', 'crow', 'wren']"), W),
    (O, ORDER, tag("['crow', 'owl']"), W),
    (O, ORDER, tag("['crow', 'owl', 'wren', 'jay']"), W),
    (O, ORDER, "crow, owl, wren", M),
    (G, "fdebme", tag(" fdebme "), R),
    (G, "fdebme", tag("Fdebme."), R),
    (G, "fdebme", tag("Alice is fdebme"), R),
    (G, "fdebme", tag("qpvxe"), W),
    (G, "fdebme", tag("fdebme or qpvxe"), W),
    (G, "fdebme", think(tag("fdebme")) + tag("qpvxe"), W),
    (A, GRID, tag("[[1, 2], [3, 4]]"), R),
    (A, GRID, tag("The output grid is:\n[[1, 2],\n [3, 4]]"), R),
    (A, GRID, tag("1 2\n3 4"), R),
    (A, GRID, tag("array([[1, 2], [3, 4]])"), R),
    ("logic__barc", GRID, think(tag("[[0, 0], [0, 0]]")) + tag("[[1,2],[3,4]]"), R),
    ("logic__arcagi2", GRID, tag("[[1, 2], [3, 5]]"), W),
    (A, GRID, tag("[[1, 2], [3, 4], [0, 0]]"), W),
    (A, GRID, "<answer>[[1, 2], [3, 4]]", M),
    (A, GRID, tag("I cannot tell"), M),
]

# --- simulation (CodeIO): "output": <value> / "input": {...} in \boxed{} and ```json``` ---------
OUT = '"output": {"double": 30, "parts": [15, 30]}'
INP = '"input": {"x": 15}'
V = '{"double": 30, "parts": [15, 30]}'
S = "simulation__codeio"
SIMULATION = [
    (OUT, '\\boxed{"output": {"double": 30, "parts": [15, 30]}}', R),
    (OUT, '```json\n{"output": {"double": 30, "parts": [15, 30]}}\n```', R),
    (OUT, '```json\n"output": {"double": 30, "parts": [15, 30]}\n```', R),
    (OUT, '```\n{"output": ' + V + '}\n```', R),
    (OUT, "\\boxed{" + V + "}", R),
    (OUT, '\\boxed{"output": {"parts": [15, 30], "double": 30}}', R),
    (INP, '\\boxed{"input": {"x": 15}}', R),
    (INP, '```json\n{"x": 15}\n```', R),
    ('"output": 3.5', '\\boxed{"output": 3.5000000001}', R),
    ('"output": "abc"', '\\boxed{"output": "abc"}', R),
    ('"output": true', '\\boxed{"output": True}', R),
    ('"output": [1, 2]', '\\boxed{"output": [1, 2]}', R),
    ('"output": "[1, 2]"', '\\boxed{"output": [1, 2]}', R),
    (OUT, think('\\boxed{"output": {"double": 31}}') + '\\boxed{"output": ' + V + '}', R),
    (OUT, '```json\n{"output": ' + V + '}\n```\nSo \\boxed{"output": ' + V + '}', R),
    ('"output": 3.5', '<answer>{"output": 3.5}</answer>', R),
    ('"output": "abc"', "\\boxed{{'output': 'abc'}}", R),
    ('"output": [1, 2]', "\\boxed{output: [1, 2]}", R),
    ('{"output": [1, 2]}', '\\boxed{"output": [1, 2]}', R),
    ('"output": [1, 2]', 'The answer is ```json {"output": [1, 2]}```', R),
    ('"output": [1, 2]', 'So the final answer is {"output": [1, 2]}.', R),          # as Reasoning360 reads it
    (OUT, '\\boxed{"output": {"double": 31, "parts": [15, 30]}}', W),
    (OUT, '\\boxed{"input": {"x": 15}}', W),
    ('"output": 3.5', '\\boxed{"output": 3.6}', W),
    ('"output": [1, 2]', '\\boxed{"output": [2, 1]}', W),
    ('"output": "abc"', '\\boxed{"output": "ABC"}', W),
    (OUT, think('\\boxed{"output": ' + V + '}') + '\\boxed{"output": {"double": 0}}', W),
    (OUT, '```json\n{"output": ' + V + '}\n```\nActually: \\boxed{"output": {"double": 30}}', W),  # the last answer counts
    ('"output": 5', '\\boxed{"output": "5"}', W),
    ('"output": 0', '\\boxed{"output": false}', W),
    (OUT, "The output is a dict with double 30.", M),
    (OUT, "\\boxed{the output is thirty}", M),
    (OUT, "<think>\n\\boxed{" + OUT + "}", M),
    (OUT, "```json\n```", M),
]

# an input prediction with several feasible inputs: the reference code decides (extra_info["codeio"])
MOD3 = {"codeio": {"refcode": "def main_solution(n):\n    return {'rest': n % 3}\n", "given_output": '{"rest": 1}'}}
SIM_FEASIBLE = [
    ('"input": {"n": 1}', '\\boxed{"input": {"n": 1}}', R),
    ('"input": {"n": 1}', '\\boxed{"input": {"n": 7}}', R),                 # Reasoning360 scores this 0
    ('"input": {"n": 1}', '```json\n{"n": 10}\n```', R),
    ('"input": {"n": 1}', '\\boxed{"input": {"n": 2}}', W),
    ('"input": {"n": 1}', '\\boxed{"input": {"n": "seven"}}', W),           # the reference code raises
    ('"input": {"n": 1}', '\\boxed{"input": {"m": 4}}', W),
    ('"input": {"n": 1}', think('\\boxed{"input": {"n": 4}}') + '\\boxed{"input": {"n": 5}}', W),
]

# --- table: \boxed{}, several answers separated by | -------------------------------------------
T, MH = "table__hitab", "table__multihier"
TABLE = [
    (T, "57|65", "\\boxed{57|65}", R),
    (T, "57|65", "\\boxed{65 | 57}", R),
    (T, "57|65", "\\boxed{57, 65}", R),
    (T, "57|65", "\\boxed{57; 65}", R),
    (T, "1200|300", "\\boxed{1,200 | 300}", R),
    (T, "1200|300", "\\boxed{300, 1,200}", R),
    (T, "16.0", "\\boxed{16}", R),
    (T, "45.7", "\\boxed{45.7\\%}", R),
    (T, "0.457", "\\boxed{45.7\\%}", R),
    (T, "1200", "\\boxed{\\$1,200}", R),
    (MH, "1234.5678", "\\boxed{1234.57}", R),
    (MH, "-2817", "\\boxed{-2,817}", R),
    (T, "Ontario", "\\boxed{\\text{ontario}}", R),
    (T, "Ontario", "\\boxed{Ontario.}", R),
    (T, "12.5", "\\boxed{12.5 years}", R),
    (T, "45.7", "\\boxed{45.7 percent}", R),
    (T, "16.0", think("\\boxed{17}") + "\\boxed{16.0}", R),
    (T, "quebec|ontario", "\\boxed{Ontario | Quebec}", R),
    (MH, "2.5", "\\boxed{\\frac{5}{2}}", R),
    (T, "45.7", "\\boxed{0.457}", W),                                    # a fraction is not the percentage shown
    (T, "57|65", "\\boxed{57}", W),
    (T, "57|65", "\\boxed{57|65|70}", W),
    (T, "57|65", "\\boxed{57|66}", W),
    (T, "16.0", "\\boxed{16.5}", W),
    (T, "Ontario", "\\boxed{Quebec}", W),
    (MH, "1200", "\\boxed{120}", W),
    (T, "16.0", think("\\boxed{16.0}") + "\\boxed{61}", W),
    (T, "16.0", "\\boxed{sixteen}", W),
    (T, "16.0", "The answer is 16 because the table says so in the second row.", M),
    (T, "57|65", think("\\boxed{1|2}") + "57|65", B),                     # bare, as Reasoning360 reads it
    (T, "0.5", "\\boxed{1:2}", R),
    (T, "122", "\\boxed{57+65}", R),
    (T, "16.0", "\\boxed{16", M),
    (T, "16.0", "<think>\n\\boxed{16.0}", M),
    (T, "16.0", "\\boxed{}", M),
]

# --- stem (WebInstruct, data_source "stem_web"): \boxed{} ----------------------------------------
W_ = "stem_web"
STEM = [
    ("2.5 m/s^2", "\\boxed{2.5\\ \\text{m/s}^2}", R),
    ("2.5 m/s^2", "\\boxed{2.5}", R),
    ("2.5 m/s^2", "\\boxed{2.50 \\, \\mathrm{m\\,s^{-2}}}", R),
    ("6.02e23", "\\boxed{6.02 \\times 10^{23}}", R),
    ("6.02 \\times 10^{23}", "\\boxed{6.02e23}", R),
    ("-0.75 V", "\\boxed{-0.75\\,\\text{V}}", R),
    ("30°", "\\boxed{30^\\circ}", R),
    ("30 degrees", "\\boxed{30^{\\circ}}", R),
    ("$8,645.09", "\\boxed{\\$8645.09}", R),
    ("2.5 kJ", "\\boxed{2500 J}", R),
    ("0.36 M", "\\boxed{0.3612\\ \\text{M}}", R),
    ("8645.09", "\\boxed{8645.1}", R),
    ("45%", "\\boxed{0.45}", R),
    ("H2O", "\\boxed{\\text{H}_2\\text{O}}", R),
    ("Helium", "\\boxed{\\text{helium}}", R),
    ("\\frac{1}{2}mv^2", "\\boxed{\\frac{mv^2}{2}}", R),
    ("F = \\frac{432m}{4913}", "\\boxed{\\frac{432m}{4913}}", R),
    ("$1.2 \\times 10^{-3}$ M", "\\boxed{0.0012\\ \\text{M}}", R),
    ("8.31 J/(mol K)", "\\boxed{8.31\\ \\text{J mol}^{-1}\\text{K}^{-1}}", R),
    ("2.5 m/s^2", think("\\boxed{9.8 m/s^2}") + "\\boxed{2.5 m/s^2}", R),
    ("2.5 m/s^2", "\\boxed{a = 2.5 \\frac{m}{s^2}}", R),
    ("0.0012 M", "\\boxed{1.2 \\times 10^{-3}\\ \\text{mol/L}}", R),
    ("16.7 m/s", "\\boxed{60 km/h}", R),
    ("2.5 m/s^2", "\\boxed{2.6 m/s^2}", W),
    ("2.5 m/s^2", "\\boxed{2.5 m/s}", W),
    ("6.02e23", "\\boxed{6.02e22}", W),
    ("0.5", "\\boxed{0.54}", W),
    ("30°", "\\boxed{30 rad}", W),
    ("Helium", "\\boxed{hydrogen}", W),
    ("10^2", "\\boxed{102}", W),
    ("2t", "\\boxed{2}", W),
    ("2g", "\\boxed{2}", W),                               # twice g, not two grams
    ("5 g", "\\boxed{5}", R),
    ("2.4525", "\\boxed{2.5}", W),
    ("2.5 m/s^2", think("\\boxed{2.5 m/s^2}") + "\\boxed{25 m/s^2}", W),
    ("Helium", "Helium.", M),
    ("Helium", "<think>\n\\boxed{Helium}", M),
    ("Helium", "\\boxed{}", M),
]

ALL = ([("math", ("math__combined", gt, resp, want, {})) for gt, resp, want in MATH]
       + [("codegen", ("codegen__leetcode2k" if extra else "codegen__taco", gt, resp, want, extra))
          for gt, resp, want, extra in CODEGEN]
       + [("logic", (ds, gt, resp, want, {})) for ds, gt, resp, want in LOGIC]
       + [("simulation", (S, gt, resp, want, {})) for gt, resp, want in SIMULATION]
       + [("simulation", (S, gt, resp, want, MOD3)) for gt, resp, want in SIM_FEASIBLE]
       + [("table", (ds, gt, resp, want, {})) for ds, gt, resp, want in TABLE]
       + [("stem", (W_ if i % 2 else "stem__web", gt, resp, want, {"question": "q"}))
          for i, (gt, resp, want) in enumerate(STEM)])


@pytest.fixture(scope="module")
def verifier():
    v = GuruVerifier(sandbox_limits=Limits(wall_s=5, cpu_s=3))
    yield v
    v.close()


@pytest.fixture(scope="module")
def batch_scores(verifier):
    return verifier.score_batch([(ds, resp, gt, extra) for _, (ds, gt, resp, _, extra) in ALL])


def test_each_domain_has_thirty_cases():
    counts = {d: sum(1 for dom, _ in ALL if dom == d) for d in ("math", "codegen", "logic", "simulation", "table", "stem")}
    assert all(n >= 30 for n in counts.values()), counts


@pytest.mark.parametrize("i", range(len(ALL)), ids=[f"{d}-{i}" for i, (d, _) in enumerate(ALL)])
def test_case(batch_scores, i):
    domain, (ds, gt, resp, want, _) = ALL[i]
    s = batch_scores[i]
    assert domain_of(ds) == domain
    assert s.reason, s
    if want is None:                                  # malformed: no answer in the asked form
        assert (s.acc, s.score, s.format) == (0.0, 0.0, 0.0), s
    elif want == B:
        assert (s.acc, s.score, s.format) == (1.0, 1.0, 0.0), s
    else:
        assert s.acc == want and s.score == want, (resp, gt, s)
        assert s.format == 1.0 or want == 0.0, s


def test_right_answers_on_every_sample_source(verifier):
    """The sample folder's rows carry the released shapes; the answer each prompt asks for
    scores 1 and a wrong one 0, for every source file."""
    items, wants = [], []
    for domain, sources in sample.SOURCES.items():
        for src, *_ in sources:
            for row in sample.rows(domain, 4, 0, source=src):
                gt, extra, ds = row["reward_model"]["ground_truth"], row["extra_info"], row["data_source"]
                if domain == "codegen":
                    right, wrong = py(extra["reference"]), py("print('nothing')\n")
                elif domain == "logic":
                    right, wrong = tag(json.dumps(gt)), tag("[[0]]" if "arc" in ds or "barc" in ds else "none")
                else:
                    right, wrong = f"\\boxed{{{gt}}}", "\\boxed{-1}"
                items += [(ds, right, gt, extra), (ds, wrong, gt, extra)]
                wants += [1.0, 0.0]
    scores = verifier.score_batch(items)
    bad = [(it[0], it[1][:60], s.reason) for it, s, w in zip(items, scores, wants) if s.acc != w]
    assert not bad, bad


def test_single_calls_match_the_batch_and_work_off_the_main_thread(verifier, batch_scores):
    """math-verify's signal-based timeouts fail in threads; the process pool avoids that."""
    items = [(ds, resp, gt, extra) for _, (ds, gt, resp, _, extra) in ALL[:8]]   # math cases
    got = {}

    def worker():
        got["scores"] = [verifier(*item) for item in items]
    t = threading.Thread(target=worker)
    t.start()
    t.join(120)
    assert [s.acc for s in got["scores"]] == [s.acc for s in batch_scores[:8]]


def test_malformed_answers_say_what_was_missing(batch_scores):
    reasons = {ALL[i][1][2]: batch_scores[i].reason for i in range(len(ALL))}
    assert "boxed" in reasons["I multiplied the two numbers and got eight hundred and twenty five in the end."]
    assert "unfinished <think>" in reasons["<think>\nlong reasoning, so far \\boxed{7} and then the response was cut"]
    assert "code block" in reasons["a, b = map(int, input().split()); print(a + b)"]
    assert "<answer>" in reasons["crow, owl, wren"]
    assert "SyntaxError" in reasons[SYNTAX]


def test_verifier_never_raises_on_odd_input(verifier):
    odd = [("math__combined", None, "1", {}), ("logic__zebra_puzzle_dataset", "<answer>{}</answer>", "not a grid", {}),
           ("simulation__codeio", "\\boxed{" + "[" * 5000 + "}", '"output": 1', {}),
           ("table__hitab", "\\boxed{1|2}", None, {}), ("codegen__taco", py("print(1)"), "not json", {}),
           ("stem_web", "\\boxed{" + "9" * 5000 + "}", "1", {})]
    for s in verifier.score_batch(odd):
        assert s.acc == 0.0 and s.reason


def test_format_weight_adds_to_the_score():
    v = GuruVerifier(format_weight=0.1)
    try:
        s = v("table__hitab", "\\boxed{3}", "4")
        assert s.acc == 0.0 and s.score == pytest.approx(0.1)
    finally:
        v.close()


def test_unknown_data_source_is_an_error(verifier):
    with pytest.raises(ValueError, match="math, codegen, logic, simulation, table, stem"):
        verifier("synthetic__arith", "#3", "3")


def test_last_boxed_balances_braces():
    assert last_boxed("\\boxed{1} then \\boxed{\\frac{a}{b}}") == "\\frac{a}{b}"
    assert last_boxed("\\boxed{\\frac{a}{b}") is None


class _Judge(BaseHTTPRequestHandler):
    """An OpenAI-compatible chat-completions server that says YES for 'H2O' vs 'water'."""
    seen: list = []

    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        text = body["messages"][-1]["content"]
        _Judge.seen.append((self.path, self.headers.get("Authorization"), text))
        yes = "Reference: water" in text and "Candidate: H_2O" in text
        reply = json.dumps({"choices": [{"message": {"role": "assistant", "content": "YES" if yes else "NO"}}]})
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(reply.encode())

    def log_message(self, *args):
        pass


def test_stem_llm_judge_is_asked_only_when_rules_fail():
    server = HTTPServer(("127.0.0.1", 0), _Judge)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_port}"
    v = GuruVerifier(judge_url=url, judge_model="judge-1", judge_api_key="tok")
    try:
        yes = v("stem__web", "\\boxed{H_2O}", "water", {"question": "What is ice made of?"})
        no = v("stem__web", "\\boxed{salt}", "water", {})
        exact = v("stem__web", "\\boxed{water}", "water", {})
    finally:
        v.close()
        server.shutdown()
    assert yes.acc == 1.0 and "judge" in yes.reason
    assert no.acc == 0.0 and "judge" in no.reason
    assert exact.acc == 1.0 and "judge" not in exact.reason
    assert len(_Judge.seen) == 2                     # the exact match never reached the judge
    assert _Judge.seen[0][0] == "/v1/chat/completions" and _Judge.seen[0][1] == "Bearer tok"


def test_judge_off_by_default_and_failures_score_zero():
    v = GuruVerifier()
    assert v.judge is None
    v.close()
    down = GuruVerifier(judge_url="http://127.0.0.1:9")   # nothing listens on port 9
    try:
        s = down("stem__web", "\\boxed{H_2O}", "water", {})
        assert s.acc == 0.0 and "judge failed" in s.reason
    finally:
        down.close()


def test_math_verify_timeout_fires_in_the_worker_even_when_called_from_a_thread():
    """A comparison slow enough to hit math-verify's own signal-based timeout (1 s here)."""
    import time
    v = GuruVerifier(math_timeout_s=1)
    out = {}

    def worker():
        t = time.monotonic()
        out["score"] = v("math__combined", "\\boxed{\\sum_{k=0}^{200} \\binom{200}{k} x^k + 1}", "(x+1)^{200}")
        out["s"] = time.monotonic() - t
    try:
        t = threading.Thread(target=worker)
        t.start()
        t.join(60)
    finally:
        v.close()
    assert out["score"].acc == 0.0 and out["score"].reason == "not equivalent"
    assert out["s"] < 10
