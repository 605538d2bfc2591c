"""Benchmark: `llara-kit serve` under bounded load on loopback, against offline scoring.

    .venv/bin/python examples/benchmarks/serve_load.py RUN [--clients 1 4 16] [--out F.json]

Starts `llara-kit serve RUN` (a subprocess on a free port of 127.0.0.1) once per serving
setting: no batching; batches of up to 8 of the requests already waiting (--max-batch 8
--max-wait-ms 0); batches that wait up to 10 ms to fill (--max-wait-ms 10); and a queue of 4
without batching, where 16 clients must meet 503 with Retry-After. For the encoder-only path
(`ranker: encoder`) and the LLM path (`ranker: llm`), 1, 4 and 16 clients (threads, one
keep-alive connection each) send a fixed number of requests, stopping early at --seconds: the
histories of the run's first test users, the encoder's shortlist of the run's candidate count
as candidates. Prints requests/s, p50/p95/p99 latency and the answers by status; then, with the
servers stopped, the offline rate of the same scoring (`evaluate` on the same test users, at
batch 1 and at evaluate's default 4) and each server's peak resident memory. Nothing runs
beside it: time it alone.
"""

from __future__ import annotations

import argparse
import http.client
import json
import re
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import torch

from llara_kit.evaluation.evaluate import evaluate
from llara_kit.run import load_prepared, load_run
from llara_kit.run_folder import read_config
from llara_kit.storage import write_json

SETTINGS = {"no batching": ["--max-batch", "1"],
            "batching 8 / 0 ms": ["--max-batch", "8", "--max-wait-ms", "0"],
            "batching 8 / 10 ms": ["--max-batch", "8", "--max-wait-ms", "10"],
            "queue of 4": ["--max-batch", "1", "--max-queue", "4"]}
REQUESTS = {"encoder": 400, "llm": 16}  # per client count: this many x max(1, clients / 4)


class Server:
    def __init__(self, run: str, args: list[str]):
        self.proc = subprocess.Popen([sys.executable, "-m", "llara_kit", "serve", run,
                                      "--port", "0", *args], stderr=subprocess.PIPE, text=True)
        first = self.proc.stderr.readline()
        self.port = int(re.search(r"127\.0\.0\.1:(\d+)/", first).group(1))
        threading.Thread(target=lambda: [None for _ in self.proc.stderr], daemon=True).start()
        for _ in range(1200):
            try:
                if request(self.connection(), "GET", "/health")[0] == 200:
                    return
            except OSError:
                pass
            time.sleep(0.1)
        raise SystemExit("the server did not get ready in 2 minutes")

    def connection(self) -> http.client.HTTPConnection:
        """A keep-alive connection that sends at once (http.client writes the headers and
        the body separately: with Nagle's algorithm on, the body would wait for an ACK)."""
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=300)
        conn.connect()
        conn.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return conn

    def peak_rss_gib(self) -> float:
        status = Path(f"/proc/{self.proc.pid}/status").read_text()
        return int(re.search(r"VmHWM:\s+(\d+) kB", status).group(1)) / 2**20

    def stop(self) -> int:
        self.proc.terminate()
        return self.proc.wait(120)


def request(conn, method: str, path: str, body: bytes | None = None):
    conn.request(method, path, body, {"Content-Type": "application/json"})
    response = conn.getresponse()
    response.read()
    return response.status, response.getheader("Retry-After")


def load(server: Server, bodies: list[bytes], clients: int, total: int, seconds: float) -> dict:
    """``total`` requests (fewer if ``seconds`` pass first) from ``clients`` threads."""
    lock, sent, results = threading.Lock(), [0], []
    deadline = time.perf_counter() + seconds

    def client() -> None:
        conn = server.connection()
        while True:
            with lock:
                i = sent[0]
                if i >= total or time.perf_counter() > deadline:
                    return
                sent[0] += 1
            start = time.perf_counter()
            try:
                status, retry = request(conn, "POST", "/recommend", bodies[i % len(bodies)])
            except (OSError, http.client.HTTPException):
                status, retry = "connection error", None
                conn.close()
                conn = server.connection()
            results.append((status, retry, time.perf_counter() - start))

    threads = [threading.Thread(target=client) for _ in range(clients)]
    start = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - start
    ok = np.array([s for st, _, s in results if st == 200])
    by_status: dict[str, int] = {}
    for status, retry, _ in results:
        key = str(status) + (" with Retry-After" if status == 503 and retry else "")
        by_status[key] = by_status.get(key, 0) + 1
    return {"clients": clients, "sent": len(results), "seconds": wall,
            "requests_per_s": len(results) / wall, "ok_per_s": len(ok) / wall,
            **{f"p{q}_ms": float(np.percentile(ok, q) * 1000) if len(ok) else None
               for q in (50, 95, 99)},
            "answers": by_status, "lost": by_status.get("connection error", 0)}


def offline_rates(run_dir: str, users: int) -> dict[str, float]:
    """Test users scored per second by `evaluate` (score mode), at batch 1 and 4."""
    run = load_run(Path(run_dir), device="cpu")
    evaluate(run, "test", batch_size=1, limit=2, record=False, show_progress=False)  # warm
    rates = {}
    for batch in (1, 4):
        start = time.perf_counter()
        evaluate(run, "test", batch_size=batch, limit=users, record=False, show_progress=False)
        rates[f"batch {batch}"] = users / (time.perf_counter() - start)
    return rates


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("run")
    parser.add_argument("--clients", type=int, nargs="+", default=[1, 4, 16])
    parser.add_argument("--seconds", type=float, default=60.0, help="Longest load per point.")
    parser.add_argument("--settings", nargs="+", choices=list(SETTINGS), default=list(SETTINGS))
    parser.add_argument("--out", type=Path, help="Also write the figures here (JSON).")
    args = parser.parse_args()
    data = load_prepared(read_config(Path(args.run)))
    test = data.splits["test"]
    users = min(len(test), REQUESTS["llm"] * max(1, max(args.clients) // 4))
    bodies = {ranker: [json.dumps({"history": [data.raw_item_ids[i] for i in test.history_of(u)],
                                   "top_k": 10, "ranker": ranker}).encode()
                       for u in range(users)] for ranker in REQUESTS}
    print(f"{args.run}: {data.n_items} items, {data.settings.candidates} candidates; torch "
          f"threads {torch.get_num_threads()}; loopback; requests per point: encoder "
          f"{REQUESTS['encoder']}, LLM {REQUESTS['llm']} x max(1, clients / 4)")
    points, memory = [], {}
    for name in args.settings:
        server = Server(args.run, SETTINGS[name])
        for ranker, per in REQUESTS.items():
            clients = args.clients if name != "queue of 4" else [max(args.clients)]
            if name == "queue of 4" and ranker == "encoder":
                continue
            load(server, bodies[ranker][:2], 1, 2, args.seconds)  # warm
            for n in clients:
                point = load(server, bodies[ranker], n, per * max(1, n // 4), args.seconds)
                points.append({"setting": name, "path": ranker} | point)
                print(f"{name:18s} {ranker:7s} {n:2d} clients: {point['requests_per_s']:7.2f} "
                      f"req/s, p50 {point['p50_ms']:8.1f} ms, p95 {point['p95_ms']:8.1f} ms, "
                      f"p99 {point['p99_ms']:8.1f} ms, answers {point['answers']}, "
                      f"lost {point['lost']}", flush=True)
        memory[name] = server.peak_rss_gib()
        code = server.stop()
        print(f"{name}: server peak RSS {memory[name]:.2f} GiB; exit {code} on SIGTERM")
    rates = offline_rates(args.run, users)
    print(f"offline `evaluate` on the same {users} test users: " + ", ".join(
        f"{k}: {v:.2f} users/s ({1000 / v:.0f} ms each)" for k, v in rates.items()))
    if args.out:
        write_json(args.out, {"points": points, "server_peak_rss_gib": memory,
                              "offline_users_per_s": rates,
                              "torch_threads": torch.get_num_threads()})


if __name__ == "__main__":
    main()
