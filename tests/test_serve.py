"""``llara-kit serve``: the real server (uvicorn in a subprocess, or in a thread where the
test holds the model thread) on a tiny trained run, called over HTTP on 127.0.0.1; the page in
headless Chromium; batching, the bounded queue and SIGTERM."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from helpers import train_tiny

from llara_kit.errors import LlaraKitError
from llara_kit.evaluation.recommend import Recommender

pytest.importorskip("fastapi", reason="llara-kit serve needs the serve extra")

CHROMIUM = shutil.which("chromium")
JSON = {"Content-Type": "application/json"}


def call(url: str, body=None, headers=None, method=None):
    """(status, JSON body, headers: case-insensitive) of one request; ``body`` bytes, or
    JSON-encoded."""
    data = body if isinstance(body, bytes) or body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, headers=headers or JSON, method=method)
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, json.loads(response.read()), response.headers
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read()), error.headers


class Server:
    """``llara-kit serve RUN --port 0 ARGS`` in a subprocess, ready (its /health says so)."""

    def __init__(self, run: Path, *args: str):
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "llara_kit", "serve", str(run), "--port", "0", *args],
            stderr=subprocess.PIPE, text=True)
        self.lines: list[str] = []
        first = self._line()
        found = re.search(r"http://127\.0\.0\.1:(\d+)/", first)
        assert found, first
        self.url = f"http://127.0.0.1:{found.group(1)}"
        threading.Thread(target=self._drain, daemon=True).start()

    def _line(self) -> str:
        line = self.proc.stderr.readline()
        self.lines.append(line)
        return line

    def _drain(self) -> None:
        while self._line():
            pass

    def wait_ready(self) -> Server:
        for _ in range(600):
            try:
                if call(self.url + "/health")[0] == 200:
                    return self
            except urllib.error.URLError:
                pass
            assert self.proc.poll() is None, "".join(self.lines)
            time.sleep(0.1)
        raise AssertionError("the server was not ready within 60 s")

    def stop(self) -> int:
        self.proc.send_signal(signal.SIGTERM)
        code = self.proc.wait(60)
        time.sleep(0.1)  # the reader thread takes the last lines
        return code


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    return train_tiny(tmp_path_factory.mktemp("serve"), "run")


@pytest.fixture(scope="module")
def recommender(run_dir) -> Recommender:
    return Recommender.from_run(run_dir)


@pytest.fixture(scope="module")
def server(run_dir):
    served = Server(run_dir).wait_ready()
    yield served
    assert served.stop() == 0


def same(served: list[dict], recs) -> bool:
    return [r["item"] for r in served] == [r.item for r in recs] and all(
        abs(a["score"] - b.score) < 1e-4 for a, b in zip(served, recs, strict=True))


def test_recommend_over_http_answers_as_the_python_api(server, recommender, run_dir):
    status, body, _ = call(server.url + "/recommend",
                           {"history": ["Item 3", "i4"], "top_k": 4, "ranker": "llm"})
    assert status == 200, body
    expected = recommender.answer([recommender.query(["i3", "i4"], top_k=4, ranker="llm")])[0]
    assert same(body["items"], expected.items) and same(body["encoder_items"],
                                                        expected.encoder_items)
    assert [r["rank"] for r in body["items"]] == [1, 2, 3, 4]
    assert body["stage"] == "llm" and body["history"] == ["Item 3", "Item 4"]
    assert not {"i3", "i4"} & {r["item"] for r in body["items"]}  # the history left out
    # given candidates, the history kept in when asked, the encoder's order
    status, body, _ = call(server.url + "/recommend", {
        "history": ["i3"], "candidates": ["i3", "Item 9", "i10"], "exclude_seen": False,
        "top_k": 3, "ranker": "encoder"})
    assert status == 200 and body["stage"] == "encoder", body
    assert {r["item"] for r in body["items"]} == {"i3", "i9", "i10"}
    assert body["items"] == body["encoder_items"]
    long = [f"i{i}" for i in range(1, 13)]  # the run reads 5
    status, body, _ = call(server.url + "/recommend", {"history": long, "top_k": 2})
    assert status == 200 and body["history"] == [f"Item {i}" for i in range(8, 13)]
    assert "the run reads the last 5" in body["notes"][0]


def test_items_health_info_schema_and_page(server, run_dir, recommender):
    status, hits, _ = call(server.url + "/items?query=item%201&limit=3")
    assert status == 200 and [h["title"] for h in hits] == ["Item 1", "Item 10", "Item 11"]
    assert call(server.url + "/health")[1] == {"status": "ready", "error": None}
    status, info, _ = call(server.url + "/info")
    assert info["data_hash"] == recommender.run.data.hash and info["candidates"] == 10
    assert info["stage"] == "llm" and info["served"]["requests"] >= 0
    schema = call(server.url + "/openapi.json")[1]
    assert {"/recommend", "/items", "/health", "/info"} <= set(schema["paths"])
    assert "history" in schema["components"]["schemas"]["RecommendRequest"]["properties"]
    with urllib.request.urlopen(server.url + "/") as page:
        assert page.headers["content-type"].startswith("text/html")
        assert 'id="results"' in page.read().decode()


@pytest.mark.parametrize(("body", "headers", "status", "sentence"), [
    (b'{"history": [Item 3"]}', JSON, 400, r"not valid JSON \(Expecting value at character 13"),
    (b"", JSON, 400, r"The body is empty; send an object such as"),
    (b"[1]", JSON, 400, r"not a JSON object"),
    (b'{"history": ["i3"]}', {"Content-Type": "text/plain"}, 415, r"sent as text/plain"),
    ({"history": ["Itme 3"]}, JSON, 422, r"No item with id or title 'Itme 3'\. Closest titles: "
                                         r"Item 3"),
    ({"history": []}, JSON, 422, r"Give at least one history item"),
    ({"history": ["i3"], "top_k": 11}, JSON, 422, r"top_k=11 must lie between 1 and 10"),
    ({"history": ["i3"], "top_k": 0}, JSON, 422, r"top_k=0 must lie between 1 and 10"),
    ({"histroy": ["i3"]}, JSON, 422, r"Unknown field 'histroy'; the fields are: history, "),
    ({"history": ["i3"], "ranker": "gpt"}, JSON, 422, r"ranker: Input should be 'auto'"),
    ({"history": [None]}, JSON, 422, r"history\[0\]: an item is its raw id or its title"),
    ({"history": ["i3"], "candidates": ["i3"]}, JSON, 422, r"Every candidate is in the history"),
    ({"history": ["i3"] * 20000}, JSON, 413, r"The body is over 65,536 bytes"),
])
def test_bad_input_gets_one_sentence_and_the_server_goes_on(server, body, headers, status,
                                                            sentence):
    got, answer, _ = call(server.url + "/recommend", body, headers, method="POST")
    assert got == status and list(answer) == ["error"], answer
    assert re.search(sentence, answer["error"]), answer["error"]
    assert answer["error"].count(". ") <= 1  # one sentence (a list of titles may follow)
    assert call(server.url + "/health")[0] == 200


def test_unknown_paths_and_methods(server):
    assert call(server.url + "/nope")[:2] == (404, {"error": "No such endpoint: GET /nope; "
                                                             "see /docs."})
    assert call(server.url + "/recommend")[0] == 405


def test_answer_batches_equal_one_at_a_time(recommender):
    rec = recommender
    queries = [rec.query(["i3", "i4"], top_k=5, ranker="llm"),
               rec.query(["i7"], top_k=3, ranker="llm"),
               rec.query(["i1", "i2", "i5", "i8"], ["i9", "i10", "i11"], top_k=3, ranker="llm"),
               rec.query(["i12"], top_k=4, ranker="encoder"),
               rec.query(["i20", "i21"], top_k=10, ranker="auto")]
    together = rec.answer(queries)
    for query, batched in zip(queries, together, strict=True):
        alone = rec.answer([query])[0]
        assert batched.stage == alone.stage
        assert same([{"item": r.item, "score": r.score} for r in batched.items], alone.items)
        assert [r.item for r in batched.encoder_items] == [r.item for r in alone.encoder_items]


def test_concurrent_requests_are_batched_and_answered_as_alone(run_dir, recommender):
    server = Server(run_dir, "--max-batch", "8", "--max-wait-ms", "1500").wait_ready()
    histories = [[f"i{i}", f"i{i + 1}"] for i in range(1, 7)]
    try:
        with ThreadPoolExecutor(len(histories)) as pool:
            answers = list(pool.map(lambda h: call(server.url + "/recommend", {
                "history": h, "top_k": 5, "ranker": "llm"}), histories))
        served = call(server.url + "/info")[1]["served"]
    finally:
        assert server.stop() == 0
    assert served["requests"] == 6 and served["batches"] < 6  # grouped
    for history, (status, body, _) in zip(histories, answers, strict=True):
        assert status == 200
        alone = recommender.answer([recommender.query(history, top_k=5, ranker="llm")])[0]
        assert same(body["items"], alone.items)


def test_sigterm_answers_the_requests_in_flight_then_exits_0(run_dir):
    # the batch waits 3 s to fill: the requests are in flight when SIGTERM comes
    server = Server(run_dir, "--max-batch", "8", "--max-wait-ms", "3000").wait_ready()
    with ThreadPoolExecutor(3) as pool:
        pending = [pool.submit(call, server.url + "/recommend", {"history": [f"i{i}"],
                                                                "top_k": 2}) for i in (1, 2, 3)]
        time.sleep(1.0)
        assert call(server.url + "/info")[1]["served"]["requests"] == 0  # none answered yet
        code = server.stop()
        answers = [p.result() for p in pending]
    assert code == 0 and [a[0] for a in answers] == [200, 200, 200]
    assert "stopped: 3 recommendation requests answered in 1 batches" in "".join(server.lines)
    with pytest.raises(urllib.error.URLError):
        call(server.url + "/health")


def test_a_run_that_fails_to_load_stops_the_server_with_its_sentence(run_dir, tmp_path):
    broken = tmp_path / "broken"
    shutil.copytree(run_dir, broken)
    manifest = json.loads((broken / "data.json").read_text())
    manifest["hash"] = "0" * 64
    (broken / "data.json").write_text(json.dumps(manifest))
    server = Server(broken)
    assert server.proc.wait(120) == 1
    time.sleep(0.1)
    assert re.search(r"Error: The prepared data's hash \w+ differs from the run's 0000",
                     "".join(server.lines)), "".join(server.lines)


def test_a_port_in_use_is_one_sentence(server):
    from llara_kit.serving.server import _bind

    port = int(server.url.rsplit(":", 1)[1])
    with pytest.raises(LlaraKitError, match=f"^Port {port} on 127.0.0.1 is in use; pick another "
                       "with --port.$"):
        _bind("127.0.0.1", port)


def test_a_full_queue_answers_503_with_retry_after(run_dir, recommender):
    """The real app in uvicorn on a thread; the model thread held by the test, so one request
    runs, one waits in a queue of 1 and the third is turned away."""
    import uvicorn

    from llara_kit.serving.app import ServeSettings, Service, create_app
    from llara_kit.serving.batcher import Batcher

    entered, release = threading.Event(), threading.Event()

    def held(queries):
        entered.set()
        release.wait(30)
        return recommender.answer(queries)

    service = Service(run_dir, ServeSettings(max_batch=1, max_queue=1))
    server = uvicorn.Server(uvicorn.Config(create_app(service), port=0, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not (server.started and service.status == "ready"):
        time.sleep(0.05)
    service.batcher.close()
    service.batcher = Batcher(held, max_batch=1, max_queue=1)
    port = server.servers[0].sockets[0].getsockname()[1]
    url = f"http://127.0.0.1:{port}/recommend"
    with ThreadPoolExecutor(2) as pool:
        first = pool.submit(call, url, {"history": ["i1"], "top_k": 2})
        assert entered.wait(30)  # the first is on the model thread
        second = pool.submit(call, url, {"history": ["i2"], "top_k": 2})
        while service.batcher.waiting < 1:
            time.sleep(0.02)
        status, body, headers = call(url, {"history": ["i3"], "top_k": 2})
        release.set()
        assert [first.result()[0], second.result()[0]] == [200, 200]
    server.should_exit = True
    thread.join(30)
    assert status == 503 and int(headers["Retry-After"]) >= 1
    assert body == {"error": f"The server is busy; retry after {headers['Retry-After']} s."}


@pytest.mark.skipif(CHROMIUM is None, reason="needs Debian's chromium for the page test: "
                    "apt-get install chromium (.ci/run installs it)")
def test_the_page_shows_the_recommendations_in_chromium(server, tmp_path):
    """The page at / in headless Chromium, opened with a history and a search in its address:
    its script calls the API and fills both tables and the search hits."""
    address = f"{server.url}/?history=i3,i4&top_k=3&ranker=llm&query=Item%202"
    dom = subprocess.run(
        [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
         "--no-first-run", "--disable-background-networking", "--disable-component-update",
         "--disable-sync", f"--user-data-dir={tmp_path / 'profile'}",
         "--virtual-time-budget=15000", "--dump-dom", address],
        capture_output=True, text=True, timeout=120).stdout
    expected = call(server.url + "/recommend", {"history": ["i3", "i4"], "top_k": 3,
                                                "ranker": "llm"})[1]

    def rows(table: str) -> list[str]:
        body = re.search(rf'<table id="{table}">.*?<tbody>(.*?)</tbody>', dom, re.S).group(1)
        return re.findall(r'<tr data-item="([^"]+)">', body)

    assert rows("results") == [r["item"] for r in expected["items"]], dom[-2000:]
    assert rows("encoder-results") == [r["item"] for r in expected["encoder_items"]]
    assert 'data-stage="llm">Ranked by the LLM<' in dom
    history = re.search(r'<ul id="history">(.*?)</ul>', dom, re.S).group(1)
    assert re.findall(r'<span class="t">([^<]+)</span>', history) == ["Item 3", "Item 4"]
    hits = re.search(r'<ul id="hits">(.*?)</ul>', dom, re.S).group(1)
    assert "Item 2" in hits and "Item 20" in hits


def test_serve_without_the_extra_says_how_to_install_it(run_dir, tmp_path):
    # a fastapi module first on the path that fails to import as a missing one does
    (tmp_path / "fastapi.py").write_text(
        "raise ModuleNotFoundError(\"No module named 'fastapi'\", name='fastapi')\n")
    env = os.environ | {"PYTHONPATH": str(tmp_path)}
    done = subprocess.run([sys.executable, "-m", "llara_kit", "serve", str(run_dir)],
                          capture_output=True, text=True, timeout=120, env=env)
    assert done.returncode == 1
    assert "pip install 'llara-kit[serve]'" in done.stderr and "Traceback" not in done.stderr


def test_recommender_query_checks_its_input(recommender):
    with pytest.raises(LlaraKitError, match="ranker='best': use one of auto, encoder, llm"):
        recommender.query(["i3"], ranker="best")
    with pytest.raises(LlaraKitError, match="top_k=3 must lie between 1 and 2"):
        recommender.query(["i3"], ["i4", "i5"], top_k=3)


def test_the_load_benchmark_runs_on_a_tiny_run(run_dir, tmp_path):
    out = tmp_path / "load.json"
    done = subprocess.run(
        [sys.executable, str(Path(__file__).parents[1] / "examples/benchmarks/serve_load.py"),
         str(run_dir), "--clients", "1", "--seconds", "3", "--settings", "no batching",
         "--out", str(out)], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    figures = json.loads(out.read_text())
    assert {(p["path"], p["clients"]) for p in figures["points"]} == {("encoder", 1), ("llm", 1)}
    for point in figures["points"]:
        assert point["lost"] == 0 and set(point["answers"]) == {"200"}
        assert point["p50_ms"] <= point["p95_ms"] <= point["p99_ms"]
    assert figures["server_peak_rss_gib"]["no batching"] > 0.1
    assert set(figures["offline_users_per_s"]) == {"batch 1", "batch 4"}


def test_titles_match_with_their_year(recommender):
    data, item = recommender.run.data, recommender.item_id("Item 3")
    years = list(data.years)
    data.years[item] = 1995
    try:
        assert Recommender(recommender.run).item_id("item 3 (1995)") == item
    finally:
        data.years[:] = years
