"""Reward models as a service, on one real local Ray + Serve for the module: Bradley-Terry
training at two sizes, the HTTP and handle APIs, auth, bad payloads, two multiplexed
checkpoints, the client's retry path, and a replica killed under load."""
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
ITEMS = [{"prompt": "3+4=", "response": "#7"}, {"prompt": "3+4=", "response": "#8"},
         {"prompt": "12+9=", "response": "#21"}, {"prompt": "s:312=", "response": "#123"},
         {"prompt": "5+5=", "response": ""}]


def _cfg(tmp: Path, size: str, d_rm: int):
    return load("rm_scaling", SMALL + [f"reward.rm.size={size}", f"reward.rm.d_rm={d_rm}",
                                       f"cache_dir={tmp}/cache"])


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """RMs at two sizes (xs, s) and a second xs checkpoint (another D_RM) for multiplexing."""
    from serve.rm import ensure_rm
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
    from serve.rm import checkpoint_root
    ray.init(num_cpus=2, include_dashboard=False, configure_logging=False)
    port = free_port()
    urls = {}
    for size, token in (("xs", None), ("s", "sekrit")):
        cfg = trained[size]["cfg"]
        urls[size] = deploy(RMAppArgs(size=size, checkpoint_root=str(checkpoint_root(cfg, size)),
                                      token=token, max_batch_size=32), port=port)
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
        assert m["rm/train_loss"] < 0.69        # below chance (log 2): it fitted its pairs
        info = json.loads((t["path"] / "rm.json").read_text())
        assert info["d_rm"] == 96 and len(info["pairs_fingerprint"]) == 16
    hidden = {n: AutoConfig.from_pretrained(trained[n]["path"]).hidden_size for n in ("xs", "s")}
    assert hidden["xs"] < hidden["s"]


def test_cached_rm_is_reused(trained):
    from serve.rm import ensure_rm
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
    assert _post(cluster["urls"]["xs"], ITEMS, key="0" * 16).status_code == 404
    assert _post(cluster["urls"]["xs"], ITEMS, key="../../etc").status_code == 404
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
