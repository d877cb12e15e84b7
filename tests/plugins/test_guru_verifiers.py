"""Every Guru domain's verifier on fixture records: known-correct, known-wrong and malformed
responses, scored one by one, in a batch, and from a thread (where signal.alarm fails)."""
import json
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest

from plugins.rewards.guru import GuruVerifier, last_boxed
from plugins.rewards.sandbox import Limits

STDIO = json.dumps({"inputs": ["2 3\n", "10 -4\n"], "outputs": ["5\n", "6\n"]})
FUNCTIONAL = json.dumps({"functional": "assert add(2, 3) == 5\nassert add(-1, 1) == 0"})
ZEBRA = {"header": ["House", "Name", "Pet"], "rows": [["1", "Alice", "cat"], ["2", "Bob", "dog"]]}

# (data_source, ground truth, correct response, wrong response, malformed response)
CASES = [
    ("math__combined", "\\frac{1}{2}", "so the answer is \\boxed{0.5}", "\\boxed{2}", "the answer is 0.5"),
    ("math__combined", "2\\sqrt{2}", "<think>...</think> \\boxed{\\sqrt{8}}", "\\boxed{2.8}", "\\boxed{\\sqrt{8}"),
    ("codegen__taco", STDIO, "```python\na, b = map(int, input().split())\nprint(a + b)\n```",
     "```python\nprint(5)\n```", "a, b = map(int, input().split()); print(a + b)"),
    ("codegen__leetcode", FUNCTIONAL, "```python\ndef add(a, b):\n    return a + b\n```",
     "```python\ndef add(a, b):\n    return a * b\n```", "```python\ndef add(a, b) return a + b\n```"),
    ("logic__zebra_puzzle", ZEBRA, "<answer>" + json.dumps(ZEBRA) + "</answer>",
     "<answer>" + json.dumps({**ZEBRA, "rows": [["1", "Bob", "cat"], ["2", "Alice", "dog"]]}) + "</answer>",
     "<answer>Alice lives in house 1"),
    ("logic__ordering_puzzle", json.dumps(["crow", "owl", "wren"]), "<answer>['Crow', 'owl', 'wren']</answer>",
     "<answer>['owl', 'crow', 'wren']</answer>", "crow, owl, wren"),
    ("logic__graph_logical", "B", "<answer> b </answer>", "<answer>C</answer>", "B"),
    ("simulation__codeio", json.dumps({"output": [1, 2.5, "x"]}), '<answer>{"output": [1, 2.5000000001, "x"]}</answer>',
     '<answer>{"output": [1, 2.6, "x"]}</answer>', "output is [1, 2.5, x]"),
    ("simulation__codeio", json.dumps({"output": {"a": True}}), '```json\n{"a": true}\n```',
     '```json\n{"a": false}\n```', "```json\n{a: true"),
    ("table__hitab", "0.45", "\\boxed{45\\%}", "\\boxed{46%}", "45%"),
    ("table__multihier", ["Paris", "1,200"], "\\boxed{1200, paris}", "\\boxed{Paris}", "Paris and 1200"),
    ("stem__web", "helium", "\\boxed{\\text{Helium}}", "\\boxed{hydrogen}", "Helium."),
    ("stem__web", "6.02\\times10^{23}", "\\boxed{6.02 \\times 10^{23}}", "\\boxed{6.02}", "about 6e23"),
]


@pytest.fixture(scope="module")
def verifier():
    v = GuruVerifier(sandbox_limits=Limits(wall_s=5, cpu_s=3))
    yield v
    v.close()


@pytest.fixture(scope="module")
def batch_scores(verifier):
    items = [(ds, resp, gt, {}) for ds, gt, *resps in CASES for resp in resps]
    return verifier.score_batch(items)


@pytest.mark.parametrize("i", range(len(CASES)), ids=[f"{c[0]}-{i}" for i, c in enumerate(CASES)])
def test_correct_wrong_and_malformed(batch_scores, i):
    right, wrong, malformed = batch_scores[3 * i:3 * i + 3]
    assert (right.acc, right.format) == (1.0, 1.0), right.reason
    assert wrong.acc == 0.0 and wrong.reason, wrong
    assert malformed.acc == 0.0 and malformed.reason, malformed
    assert right.score == 1.0 and wrong.score == 0.0


def test_malformed_answers_say_what_was_missing(batch_scores):
    by_ds = {CASES[i // 3][0]: batch_scores[i] for i in range(2, len(batch_scores), 3)}
    assert by_ds["math__combined"].format == 0.0
    assert "boxed" in by_ds["math__combined"].reason
    assert "code block" in by_ds["codegen__taco"].reason
    assert "<answer>" in by_ds["logic__graph_logical"].reason
    syntax = batch_scores[3 * 3 + 2]       # codegen functional, syntax error
    assert syntax.format == 1.0 and "SyntaxError" in syntax.reason


def test_single_calls_match_the_batch_and_work_off_the_main_thread(verifier, batch_scores):
    """math-verify's signal-based timeouts fail in threads; the process pool avoids that."""
    items = [(ds, resp, gt, {}) for ds, gt, *resps in CASES for resp in resps]
    got = {}

    def worker():
        got["scores"] = [verifier(*item) for item in items[:6]]   # math cases
    t = threading.Thread(target=worker)
    t.start()
    t.join(120)
    assert [s.acc for s in got["scores"]] == [s.acc for s in batch_scores[:6]]


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
