"""Reward models as a service, on one real local Ray + Serve for the module: Bradley-Terry
training at two sizes, the HTTP and handle APIs, auth, bad payloads, two multiplexed
checkpoints, the client's retry path, and a replica killed under load; then the hardening of
the endpoint: size limits before tokenisation, requests split into batches, text no tokenizer
takes, auth before the body, model ids, and a big or slow request next to an innocent one.

The xs app runs with the default limits (derived from the tiny ladder's 64-position context:
256 characters per prompt or response, 4096 items, 32 MiB); the s app, with a token, has
explicit small ones (``S_LIMITS``)."""
import json
import os
import threading
import time
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path

import pytest
import requests

from core.config import load
from core.grid import free_port
from plugins.rewards.learned_rm import LearnedRM, RMUnavailable

SMALL = ["grid.axes={}", "model=xs", "data.d_sft=2000", "sft.steps=200", "data.difficulties=[1,2]", "reward.rm.n_eval_pairs=32",
         "reward.rm.steps=60", "reward.rm.batch_size=16", "reward.rm.lr=1e-3", "reward.rm.init=random"]
S_LIMITS = {"max_body_bytes": 100_000, "max_items": 100, "max_prompt_chars": 1000, "max_response_chars": 500}
ITEMS = [{"prompt": "3+4=", "response": "#7"}, {"prompt": "3+4=", "response": "#8"},
         {"prompt": "12+9=", "response": "#21"}, {"prompt": "s:312=", "response": "#123"},
         {"prompt": "5+5=", "response": ""}]


def _cfg(tmp: Path, size: str, d_rm: int):
    return load("rm_scaling", SMALL + [f"reward.rm.size={size}", f"reward.rm.d_rm={d_rm}",
                                       f"cache_dir={tmp}/cache"])


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """RMs at two sizes (xs, s) and a second xs checkpoint (another D_RM) for multiplexing."""
    from core.rm import ensure_rm
    tmp = tmp_path_factory.mktemp("rm")
    out = {}
    for name, size, d_rm in (("xs", "xs", 96), ("s", "s", 96), ("xs_b", "xs", 48)):
        cfg = _cfg(tmp, size, d_rm)
        key, path, metrics = ensure_rm(cfg, log=lambda *a: None)
        out[name] = {"cfg": cfg, "key": key, "path": path, "metrics": metrics}
    return out


@pytest.fixture(scope="module")
def cluster(trained):
    import ray
    from ray import serve

    from serve.app import RMAppArgs, deploy
    from core.rm import checkpoint_root
    ray.init(num_cpus=2, include_dashboard=False, configure_logging=False)
    port = free_port()
    urls = {}
    for size, token, limits in (("xs", None, {}), ("s", "sekrit", S_LIMITS)):
        cfg = trained[size]["cfg"]
        urls[size] = deploy(RMAppArgs(size=size, checkpoint_root=str(checkpoint_root(cfg, size)),
                                      token=token, max_batch_size=32, **limits), port=port)
    yield {"port": port, "urls": urls, "base": f"http://127.0.0.1:{port}"}
    serve.shutdown()
    ray.shutdown()


def _direct(path: Path, items) -> list[float]:
    from serve.rm_model import load_rm, rewards
    model, tok = load_rm(str(path))
    return rewards(model, tok, [i["prompt"] for i in items], [i["response"] for i in items])


def _post(url, items, key=None, token=None, **kw):
    headers = {}
    if key:
        headers["serve_multiplexed_model_id"] = key
    if token:
        headers["Authorization"] = f"Bearer {token}"
    return requests.post(url, json={"items": items} if items is not None else kw.get("body"),
                         headers=headers, timeout=60)


def test_training_at_two_sizes_writes_hf_checkpoints(trained):
    from transformers import AutoConfig, AutoModelForSequenceClassification
    for name in ("xs", "s"):
        t = trained[name]
        assert (t["path"] / "config.json").exists() and (t["path"] / "rm.json").exists()
        model = AutoModelForSequenceClassification.from_pretrained(t["path"])
        assert model.config.num_labels == 1
        m = t["metrics"]
        assert 0.0 <= m["rm/heldout_acc"] <= 1.0 and 0.0 <= m["rm/heldout_ece"] <= 1.0
        assert m["rm/train_loss"] < m["rm/train_loss_start"]      # it fitted its pairs
        info = json.loads((t["path"] / "rm.json").read_text())
        assert info["d_rm"] == 96 and len(info["pairs_fingerprint"]) == 16
    hidden = {n: AutoConfig.from_pretrained(trained[n]["path"]).hidden_size for n in ("xs", "s")}
    assert hidden["xs"] < hidden["s"]


def test_cached_rm_is_reused(trained):
    from core.rm import ensure_rm
    logs = []
    key, path, _ = ensure_rm(trained["xs"]["cfg"], log=logs.append)
    assert key == trained["xs"]["key"] and any("reusing" in line for line in logs)


def test_http_scores_in_order(cluster, trained):
    r = _post(cluster["urls"]["xs"], ITEMS, key=trained["xs"]["key"])
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["model_id"] == trained["xs"]["key"]
    assert body["scores"] == pytest.approx(_direct(trained["xs"]["path"], ITEMS), abs=1e-4)
    one = _post(cluster["urls"]["xs"], ITEMS[2:3], key=trained["xs"]["key"]).json()["scores"]
    assert one == pytest.approx(body["scores"][2:3], abs=1e-4)
    health = requests.get(cluster["base"] + "/rm/xs/healthz", timeout=30).json()
    assert health["status"] == "ok" and trained["xs"]["key"] in health["loaded"]


def test_handle_api_matches_http(cluster, trained):
    from ray import serve
    handle = serve.get_app_handle("rm_xs").options(multiplexed_model_id=trained["xs"]["key"])
    scores = handle.score_items.remote(ITEMS).result()
    assert scores == pytest.approx(_direct(trained["xs"]["path"], ITEMS), abs=1e-4)


def test_bearer_token_is_required_when_configured(cluster, trained):
    url, key = cluster["urls"]["s"], trained["s"]["key"]
    assert _post(url, ITEMS, key=key).status_code == 401
    assert _post(url, ITEMS, key=key, token="wrong").status_code == 401
    ok = _post(url, ITEMS, key=key, token="sekrit")
    assert ok.status_code == 200
    assert ok.json()["scores"] == pytest.approx(_direct(trained["s"]["path"], ITEMS), abs=1e-4)


@pytest.mark.parametrize("body,field", [
    ({}, "body.items"),
    ({"items": "x"}, "body.items"),
    ({"items": []}, "body.items"),
    ({"items": [{"prompt": "1+1="}]}, "body.items.0.response"),
    ({"items": [{"prompt": 3, "response": "#2"}]}, "body.items.0.prompt"),
])
def test_malformed_requests_get_422_naming_the_field(cluster, trained, body, field):
    r = requests.post(cluster["urls"]["xs"], json=body, timeout=30,
                      headers={"serve_multiplexed_model_id": trained["xs"]["key"]})
    assert r.status_code == 422, r.text
    assert field in r.json()["detail"] and field in [e["field"] for e in r.json()["errors"]]


def test_unknown_or_missing_model_id(cluster):
    r = _post(cluster["urls"]["xs"], ITEMS, key="0" * 16)
    assert r.status_code == 404 and "no checkpoint '0000000000000000'" in r.json()["detail"]
    r = _post(cluster["urls"]["xs"], ITEMS)
    assert r.status_code == 422 and "serve_multiplexed_model_id" in r.text


def test_two_checkpoints_multiplexed_on_one_app(cluster, trained):
    a, b = trained["xs"], trained["xs_b"]
    assert a["key"] != b["key"]
    sa = _post(cluster["urls"]["xs"], ITEMS, key=a["key"]).json()["scores"]
    sb = _post(cluster["urls"]["xs"], ITEMS, key=b["key"]).json()["scores"]
    assert sa == pytest.approx(_direct(a["path"], ITEMS), abs=1e-4)
    assert sb == pytest.approx(_direct(b["path"], ITEMS), abs=1e-4)
    assert sa != pytest.approx(sb, abs=1e-4)
    loaded = requests.get(cluster["base"] + "/rm/xs/healthz", timeout=30).json()["loaded"]
    assert {a["key"], b["key"]} <= set(loaded)


def test_client_scores_and_reports_its_requests(cluster, trained):
    client = LearnedRM(cluster["base"], "xs", model_id=trained["xs"]["key"], chunk=2)
    try:
        got = client.rm_scores([i["prompt"] for i in ITEMS], [i["response"] for i in ITEMS])
        assert got == pytest.approx(_direct(trained["xs"]["path"], ITEMS), abs=1e-4)
        assert client.metrics() == {"reward/rm_errors": 0.0, "reward/rm_requests": 3.0}
    finally:
        client.close()


class _Flaky(BaseHTTPRequestHandler):
    """Answers 503 to the first two requests, then scores = response lengths."""
    calls = 0

    def do_POST(self):
        _Flaky.calls += 1
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        if _Flaky.calls <= 2:
            self.send_response(503)
            self.end_headers()
            self.wfile.write(b"warming up")
            return
        out = json.dumps({"scores": [float(len(i["response"])) for i in body["items"]], "model_id": "m"})
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(out.encode())

    def log_message(self, *a):
        pass


def test_client_retries_5xx_and_connection_errors_then_gives_up_loudly():
    server = HTTPServer(("127.0.0.1", 0), _Flaky)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    client = LearnedRM(f"http://127.0.0.1:{server.server_port}", "xs", retries=4, backoff_s=0.01)
    try:
        assert client.rm_scores(["p", "p"], ["ab", "abcd"]) == [2.0, 4.0]
        assert client.errors == 2 and _Flaky.calls == 3
    finally:
        client.close()
        server.shutdown()
    dead = LearnedRM(f"http://127.0.0.1:{free_port()}", "xs", retries=2, backoff_s=0.01)
    try:
        with pytest.raises(RMUnavailable, match="failed 3 times"):
            dead.rm_scores(["p"], ["r"])
        assert dead.errors == 3                  # counted, never silently scored 0
    finally:
        dead.close()


def test_client_does_not_retry_4xx(cluster, trained):
    client = LearnedRM(cluster["base"], "s", model_id=trained["s"]["key"], token="wrong", retries=3)
    try:
        with pytest.raises(RMUnavailable, match="HTTP 401"):
            client.rm_scores(["p"], ["r"])
        assert client.requests == 1
    finally:
        client.close()


def test_replica_killed_under_load_loses_no_request(cluster, trained):
    """Kill the xs replica while a client scores batches: the client retries, every score
    matches the checkpoint's, and Serve brings up a new replica."""
    import ray
    key, path = trained["xs"]["key"], trained["xs"]["path"]
    base = cluster["base"]
    pid_before = requests.get(base + "/rm/xs/healthz", timeout=30).json()["pid"]
    items = [{"prompt": f"{a}+{b}=", "response": f"#{a + b + (a % 2)}"} for a in range(10) for b in range(6)]
    want = _direct(path, items)
    client = LearnedRM(base, "xs", model_id=key, chunk=4, concurrency=4, retries=8, backoff_s=0.2)
    results, errors = [], []

    def load():
        try:
            for _ in range(6):
                results.append(client.rm_scores([i["prompt"] for i in items], [i["response"] for i in items]))
        except Exception as exc:   # surfaced by the assertion below
            errors.append(exc)
    t = threading.Thread(target=load)
    t.start()
    time.sleep(0.5)
    replicas = [a for a in ray.util.list_named_actors(all_namespaces=True)
                if "SERVE_REPLICA" in a["name"] and "rm_xs" in a["name"]]
    assert replicas, ray.util.list_named_actors(all_namespaces=True)
    for a in replicas:
        ray.kill(ray.get_actor(a["name"], namespace=a["namespace"]), no_restart=True)
    t.join(180)
    client.close()
    assert not errors, errors
    assert len(results) == 6
    for got in results:
        assert got == pytest.approx(want, abs=1e-4)
    deadline = time.time() + 60
    while time.time() < deadline:
        try:
            pid_after = requests.get(base + "/rm/xs/healthz", timeout=10).json()["pid"]
            if pid_after != pid_before:
                break
        except (requests.RequestException, ValueError):
            pass
        time.sleep(1)
    assert pid_after != pid_before        # a new replica process serves now


def test_verl_bridge_scores_with_the_served_rm(cluster, trained):
    """The verl reward bridge, loaded by verl's own NaiveRewardManager, calls this Serve app
    and returns the same score as the checkpoint itself (gold acc from the rule verifier)."""
    from tests.core.test_verl_backend import run_in_verl
    key, path = trained["xs"]["key"], trained["xs"]["path"]
    samples = [("3+4=", "#7", "synthetic__arith", "7", {"prompt_text": "3+4=", "domain": "arith"}),
               ("3+4=", "#8", "synthetic__arith", "7", {"prompt_text": "3+4=", "domain": "arith"})]
    got = run_in_verl({"reward_name": "learned_rm", "rm_url": cluster["base"], "rm_size": "xs",
                       "rm_model_id": key, "rm_gold": "synthetic"}, samples)
    want = _direct(path, [{"prompt": "3+4=", "response": "#7"}, {"prompt": "3+4=", "response": "#8"}])
    assert [g["reward_score"] for g in got] == pytest.approx(want, abs=1e-4)
    assert [g["reward_extra_info"]["acc"] for g in got] == [1.0, 0.0]


def test_a_bad_model_id_fails_only_its_own_request(cluster, trained):
    """Requests are batched together; a 404 for one must not fail the others."""
    from concurrent.futures import ThreadPoolExecutor
    good, url = trained["xs"]["key"], cluster["urls"]["xs"]
    with ThreadPoolExecutor(8) as pool:
        futures = [pool.submit(_post, url, ITEMS, key=good if i % 2 else "f" * 16) for i in range(16)]
        codes = [f.result().status_code for f in futures]
    assert codes == [404, 200] * 8


# --- hardening: limits, batch splitting, bad text, auth order, model ids, isolation ------------------
def _many(n: int) -> list[dict]:
    """``n`` distinct items (so an order mix-up shows in the scores)."""
    return [{"prompt": f"{i % 97}+{i // 97}=", "response": f"#{(i * 7) % 1000}"} for i in range(n)]


def _errors(r) -> dict[str, str]:
    return {e["field"]: e["message"] for e in r.json()["errors"]}


def test_pure_checks_name_the_field_and_the_limit():
    from serve.app import Rejected, check_items, check_model_id, micro_batches, parse_body
    limits = {"prompt": 10, "response": 5}
    with pytest.raises(Rejected) as e:
        check_items([{"prompt": "p", "response": "r"}, {"prompt": "p", "response": "123456"}], 8, limits, "body.items")
    assert e.value.status_code == 413
    assert e.value.errors == [("body.items.1.response", "6 characters, more than max_response_chars=5")]
    with pytest.raises(Rejected) as e:
        check_items([{"prompt": "a\ud800", "response": "r"}], 8, limits)
    assert e.value.status_code == 422 and e.value.errors[0][0] == "items.0.prompt" and "surrogate" in e.value.detail
    with pytest.raises(Rejected, match="max_items=2") as e:
        parse_body(json.dumps({"items": [{"prompt": "p", "response": "r"}] * 3}).encode(), 2)
    assert e.value.status_code == 413
    for raw, field in ((b"{", "body"), (b'["x"]', "body"),
                       (b'{"items": [{"prompt": 1, "response": "r"}]}', "body.items.0.prompt"),
                       (b"[" * 100_000, "body"), (b'{"items": "\xff"}', "body")):
        with pytest.raises(Rejected) as e:
            parse_body(raw, 10)
        assert e.value.status_code == 422 and e.value.errors[0][0] == field, (raw[:20], e.value.errors)
    check_model_id("0123abcd.v2_x-y")
    check_model_id("org/model", allowed_ids=["org/model"])
    for bad in ("../etc", "a/b", ".hidden", "a b", "", "x" * 129, "caf\u00e9", "a\x00b"):
        with pytest.raises(Rejected) as e:
            check_model_id(bad)
        assert e.value.status_code == 422 and e.value.errors[0][0] == "model_id"
    # length-sorted groups within the padded budget, every index once, long items alone
    lengths = [5, 100, 3, 50, 100, 7, 1000]
    groups = micro_batches(lengths, 200)
    assert sorted(i for g in groups for i in g) == list(range(len(lengths)))
    assert all(len(g) == 1 or len(g) * max(lengths[i] for i in g) <= 200 for g in groups)
    assert [6] in groups and micro_batches([1] * 64, 10 ** 6) == [list(range(64))]
    # a Rejected survives pickling (it crosses Ray through the handle API)
    import pickle
    back = pickle.loads(pickle.dumps(Rejected(413, ("body", "too big"))))
    assert (back.status_code, back.errors, back.detail) == (413, [("body", "too big")], "body: too big")


def test_a_failing_batch_fails_only_the_requests_at_fault():
    """If a batch's forward fails, each request is scored alone: the good ones get their
    scores, one whose text the tokenizer refuses a 422 naming the field (offset by its chunk),
    one that fails otherwise its own error."""
    import asyncio

    from serve.app import Rejected, score_isolating

    def tok(text, **kw):
        if "\x00" in text:
            raise ValueError("no NUL")
        return {"input_ids": [1] * len(text)}

    async def run(items):
        if any("\x00" in it["prompt"] + it["response"] or it["response"] == "oom" for it in items):
            raise RuntimeError("forward failed")
        return [float(len(it["response"])) for it in items]
    ok = ([{"prompt": "p", "response": "ab"}, {"prompt": "p", "response": "abc"}], "body.items", 0)
    nul = ([{"prompt": "p", "response": "a"}, {"prompt": "p", "response": "x\x00"}], "body.items", 32)
    oom = ([{"prompt": "p", "response": "oom"}], "items", 0)
    out = asyncio.run(score_isolating(run, tok, [ok, nul, oom, ok]))
    assert out[0] == out[3] == [2.0, 3.0]
    assert isinstance(out[1], Rejected) and out[1].status_code == 422 and out[1].errors[0][0] == "body.items.33.response"
    assert isinstance(out[2], RuntimeError) and "forward failed" in str(out[2])
    assert asyncio.run(score_isolating(run, tok, [ok, ok])) == [[2.0, 3.0], [2.0, 3.0]]


def test_tokenizer_errors_name_the_item_and_field(trained):
    from serve.app import tokenizer_error
    from serve.rm_model import load_rm
    _, tok = load_rm(str(trained["xs"]["path"]))
    items = [{"prompt": "1+1=", "response": "#2"}, {"prompt": "2+2=", "response": "#4\udfff"}]
    err = tokenizer_error(tok, items, "body.items", offset=64)
    assert err is not None and err.status_code == 422 and err.errors[0][0] == "body.items.65.response"
    assert tokenizer_error(tok, items[:1], "body.items", 0) is None


def test_requests_larger_than_a_batch_are_split_in_order(cluster, trained):
    """max_batch_size is 32 on this app: 33, 65 and 4096 items (the limit) score as if alone."""
    key, url = trained["xs"]["key"], cluster["urls"]["xs"]
    items = _many(4096)
    want = _direct(trained["xs"]["path"], items)
    for n in (33, 65, 4096):
        r = _post(url, items[:n], key=key)
        assert r.status_code == 200, r.text[:500]
        assert r.json()["scores"] == pytest.approx(want[:n], abs=1e-4)
    r = _post(url, items + items[:1], key=key)
    assert r.status_code == 413 and _errors(r) == {
        "body.items": "4097 items, more than max_items=4096 per request; send them in several requests"}
    r = _post(cluster["urls"]["s"], items[:101], key=trained["s"]["key"], token="sekrit")
    assert r.status_code == 413 and "max_items=100" in r.json()["detail"]


def test_text_limits_default_to_the_checkpoints_context(cluster, trained):
    """xs has 64 positions: 4 x 64 = 256 characters per prompt or response by default; the s
    app's limits are explicit. Both are checked before tokenisation and name item and field."""
    key, url = trained["xs"]["key"], cluster["urls"]["xs"]
    assert requests.get(cluster["base"] + "/rm/xs/healthz", timeout=30).json()["limits"]["max_prompt_chars"] is None
    ok = [{"prompt": "1" * 256, "response": "2" * 256}]
    assert _post(url, ok, key=key).status_code == 200
    r = _post(url, ITEMS + [{"prompt": "1+1=", "response": "#" * 257}], key=key)
    assert r.status_code == 413
    assert _errors(r) == {"body.items.5.response": f"257 characters, more than max_response_chars=256 for model {key}"}
    r = _post(cluster["urls"]["s"], [{"prompt": "x" * 1001, "response": "#1"}], key=trained["s"]["key"], token="sekrit")
    assert r.status_code == 413 and "body.items.0.prompt: 1001 characters, more than max_prompt_chars=1000" in r.json()["detail"]


def test_a_megabyte_string_is_refused_at_once(cluster, trained):
    key, url = trained["xs"]["key"], cluster["urls"]["xs"]
    pid = requests.get(cluster["base"] + "/rm/xs/healthz", timeout=30).json()["pid"]
    for field in ("prompt", "response"):
        t = time.time()
        r = _post(url, [{"prompt": "1+1=", "response": "#2", field: "7" * 2_000_000}], key=key)
        assert r.status_code == 413 and f"body.items.0.{field}" in _errors(r), r.text[:300]
        assert "2000000 characters, more than max_" in r.json()["detail"]
        assert time.time() - t < 10
    assert requests.get(cluster["base"] + "/rm/xs/healthz", timeout=30).json()["pid"] == pid   # not restarted


def test_body_size_limit_is_checked_before_parsing(cluster, trained):
    url, key = cluster["urls"]["s"], trained["s"]["key"]
    headers = {"serve_multiplexed_model_id": key, "Authorization": "Bearer sekrit", "Content-Type": "application/json"}
    r = requests.post(url, data=b"{" + b" " * 150_000 + b"}", headers=headers, timeout=30)
    assert r.status_code == 413 and _errors(r) == {"body": "150002 bytes, more than max_body_bytes=100000"}

    def chunked():                  # no Content-Length: counted as it streams in
        for _ in range(20):
            yield b" " * 10_000
    r = requests.post(url, data=chunked(), headers=headers, timeout=30)
    assert r.status_code == 413 and "max_body_bytes=100000" in r.json()["detail"]
    assert _post(url, ITEMS, key=key, token="sekrit").status_code == 200


def test_text_a_tokenizer_cannot_take_gets_422(cluster, trained):
    key, url = trained["xs"]["key"], cluster["urls"]["xs"]
    r = _post(url, ITEMS + [{"prompt": "\ud800", "response": "#1"}, {"prompt": "1+1=", "response": "#2\udfff"}], key=key)
    assert r.status_code == 422, r.text
    assert set(_errors(r)) == {"body.items.5.prompt", "body.items.6.response"}
    assert "unpaired surrogate '\\ud800' at character 0" in _errors(r)["body.items.5.prompt"]
    headers = {"serve_multiplexed_model_id": key, "Content-Type": "application/json"}
    r = requests.post(url, data=b'{"items": [{"prompt": "\xff\xfe", "response": "#1"}]}', headers=headers, timeout=30)
    assert r.status_code == 422 and "not UTF-8" in _errors(r)["body"]
    r = requests.post(url, data=b'{"items": [', headers=headers, timeout=30)
    assert r.status_code == 422 and "not valid JSON" in _errors(r)["body"]


def test_handle_api_splits_and_refuses_like_http(cluster, trained):
    from ray import serve

    from serve.app import Rejected
    key = trained["xs"]["key"]
    handle = serve.get_app_handle("rm_xs").options(multiplexed_model_id=key)
    items = _many(100)
    assert handle.score_items.remote(items).result() == pytest.approx(_direct(trained["xs"]["path"], items), abs=1e-4)
    for bad, status, field in (([{"prompt": "p", "response": "\ud800"}], 422, "items.0.response"),
                               ([{"prompt": "p"}], 422, "items.0.response"),
                               ([{"prompt": "p" * 257, "response": "r"}], 413, "items.0.prompt"),
                               (_many(4097), 413, "items")):
        with pytest.raises(Rejected) as e:
            handle.score_items.remote(bad).result()
        assert e.value.status_code == status and e.value.errors[0][0] == field, e.value
    with pytest.raises(Rejected) as e:
        serve.get_app_handle("rm_xs").options(multiplexed_model_id="a" * 5000).score_items.remote(ITEMS).result()
    assert e.value.status_code == 422 and "more than the 128" in e.value.detail


@pytest.mark.parametrize("key,status,message", [
    ("a" * 5000, 422, "5000 characters (starting 'aaaa"),
    ("../../etc", 422, "is not a checkpoint name"),
    ("sub/dir", 422, "is not a checkpoint name"),
    (".cache", 422, "is not a checkpoint name"),
    ("with space", 422, "is not a checkpoint name"),
    ("f" * 16, 404, "no checkpoint 'ffffffffffffffff'"),
])
def test_model_ids_are_validated(cluster, key, status, message):
    r = _post(cluster["urls"]["xs"], ITEMS, key=key)
    assert r.status_code == status and message in _errors(r)["model_id"], r.text[:300]


@pytest.mark.parametrize("authorization", [
    None, "sekrit", "Basic sekrit", "Bearer wrong", "Bearer  sekrit", "Bearer sekrit ", "Bearersekrit",
    "Bearer s\u00e9krit",        # not ASCII: refused, not a 500
])
@pytest.mark.parametrize("body", [
    {"items": ITEMS},               # well-formed
    {"items": [{"prompt": 3}]},     # malformed: still 401, the body is not looked at
    b"{not json",
    {"items": [{"prompt": "x" * 2_000_000, "response": "r"}]},
])
def test_auth_comes_first_and_needs_exactly_bearer(cluster, trained, authorization, body):
    headers = {"serve_multiplexed_model_id": trained["s"]["key"], "Content-Type": "application/json"}
    if authorization is not None:
        headers["Authorization"] = authorization
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    r = requests.post(cluster["urls"]["s"], data=data, headers=headers, timeout=30)
    assert r.status_code == 401 and r.headers["WWW-Authenticate"] == "Bearer", (r.status_code, r.text[:200])
    assert "Authorization: Bearer <token>" in r.json()["detail"]


def test_bearer_scheme_is_case_insensitive_and_bad_bodies_get_their_own_error_once_authorised(cluster, trained):
    headers = {"serve_multiplexed_model_id": trained["s"]["key"], "Authorization": "bearer sekrit"}
    assert requests.post(cluster["urls"]["s"], json={"items": ITEMS}, headers=headers, timeout=30).status_code == 200
    r = requests.post(cluster["urls"]["s"], json={"items": [{"prompt": 3}]}, headers=headers, timeout=30)
    assert r.status_code == 422 and "body.items.0.prompt" in _errors(r)


def test_a_big_or_bad_request_cannot_hold_up_or_fail_another(cluster, trained):
    """Sent together: a 2 MB item (413), text with a surrogate (422), a big request of 2,048
    items (64 batches of this app's 32) and, once that one is being scored, an innocent one.
    The innocent one gets the right scores in a fraction of the big one's time (it waits for
    at most two of its batches), /healthz answers meanwhile, the big one is scored right too,
    and the replica is the same process throughout."""
    from concurrent.futures import ThreadPoolExecutor
    key, url, path = trained["xs"]["key"], cluster["urls"]["xs"], trained["xs"]["path"]
    big = [{"prompt": (f"{i}+" * 64)[:64], "response": (f"#{i}" * 64)[:64]} for i in range(2048)]
    innocent = _many(20)
    want_big, want_innocent = _direct(path, big), _direct(path, innocent)
    pid = requests.get(cluster["base"] + "/rm/xs/healthz", timeout=30).json()["pid"]

    def timed(fn, *a, **kw):
        t = time.time()
        r = fn(*a, **kw)
        return r, time.time() - t, time.time()
    with ThreadPoolExecutor(5) as pool:
        f_big = pool.submit(timed, _post, url, big, key=key)
        f_huge = pool.submit(timed, _post, url, [{"prompt": "9" * 2_000_000, "response": "#1"}], key=key)
        f_bad = pool.submit(timed, _post, url, [{"prompt": "\ud800", "response": "#1"}], key=key)
        time.sleep(1.0)             # the big request is being scored by now
        f_health = pool.submit(timed, requests.get, cluster["base"] + "/rm/xs/healthz", timeout=30)
        f_innocent = pool.submit(timed, _post, url, innocent, key=key)
        (r_big, t_big, end_big), (r_huge, t_huge, _), (r_bad, _, _) = f_big.result(), f_huge.result(), f_bad.result()
        (r_inn, t_inn, end_inn), (r_health, t_health, _) = f_innocent.result(), f_health.result()
    print(f"\n[isolation] innocent {t_inn:.2f}s, big {t_big:.2f}s, healthz {t_health:.2f}s, 2 MB {t_huge:.2f}s")
    assert r_huge.status_code == 413 and t_huge < 10
    assert r_bad.status_code == 422
    assert r_inn.status_code == 200 and r_inn.json()["scores"] == pytest.approx(want_innocent, abs=1e-4)
    assert r_health.status_code == 200 and t_health < 5
    assert r_big.status_code == 200 and r_big.json()["scores"] == pytest.approx(want_big, abs=1e-4)
    assert end_inn < end_big and t_inn < 0.5 * t_big and t_inn < 15, (t_inn, t_big)
    assert requests.get(cluster["base"] + "/rm/xs/healthz", timeout=30).json()["pid"] == pid


def test_client_splits_chunks_under_the_byte_limit(cluster, trained):
    from plugins.rewards.learned_rm import split_chunks
    items = _many(10)
    chunks = split_chunks(items, 4, 120)
    assert [it for c in chunks for it in c] == items and all(len(c) <= 4 for c in chunks)
    assert all(len(json.dumps({"items": c})) <= 120 + 20 for c in chunks if len(c) > 1)
    client = LearnedRM(cluster["base"], "xs", model_id=trained["xs"]["key"], chunk=64, max_chunk_bytes=300)
    try:
        got = client.rm_scores([i["prompt"] for i in items], [i["response"] for i in items])
        assert got == pytest.approx(_direct(trained["xs"]["path"], items), abs=1e-4)
        assert client.metrics()["reward/rm_requests"] > 1 and client.errors == 0
        with pytest.raises(RMUnavailable, match="HTTP 413.*max_response_chars=256"):
            client.rm_scores(["1+1="], ["#" * 300])
        assert client.errors == 1                    # refused once, not retried
    finally:
        client.close()
