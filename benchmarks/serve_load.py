"""A bounded burst of requests to serve.py on loopback, beside predict.py on the same inputs.

    python benchmarks/serve_load.py ckpt_path=<file.ckpt> inputs=<file listing inputs> [requests=2000] [concurrency=32]
                                    [per_call=5]

Starts `python serve.py` on a free loopback port, sends `requests` requests (the listed inputs, round and round) from
`concurrency` threads, and reports requests/s and p50/p99 latency. Then the same number of predictions through one
`predict.py inputs=<file>` process, and through one `predict.py input=...` process per input: that one is timed on
`per_call` inputs and scaled (2,000 processes would take hours). Ratios are against the server's throughput.
"""
from __future__ import annotations

import json
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main(argv: list[str]) -> None:
    options = dict(a.split("=", 1) for a in argv)
    ckpt, listing = options["ckpt_path"], Path(options["inputs"])
    total, concurrency = int(options.get("requests", 2000)), int(options.get("concurrency", 32))
    per_call = int(options.get("per_call", 5))
    inputs = [line.strip() for line in listing.read_text().splitlines() if line.strip()]
    inputs = [str(listing.parent / x) if (listing.parent / x).is_file() else x for x in inputs]
    files = all(Path(x).is_file() for x in inputs)
    port = _port()
    server = subprocess.Popen([sys.executable, "serve.py", f"ckpt_path={ckpt}", f"port={port}", "device=cpu"],
                              cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(600):
            try:
                urllib.request.urlopen(url + "/health", timeout=1)
                break
            except OSError:
                time.sleep(0.2)
        bodies = [(Path(x).read_bytes(), "audio/wav" if x.endswith(".wav") else "image/png") if files else
                  (json.dumps({"input": x}).encode(), "application/json") for x in inputs]

        def send(i: int) -> float:
            body, kind = bodies[i % len(bodies)]
            request = urllib.request.Request(url + "/predict", data=body, headers={"Content-Type": kind})
            started = time.perf_counter()
            with urllib.request.urlopen(request, timeout=120) as answer:
                assert answer.status == 200
                answer.read()
            return time.perf_counter() - started

        for i in range(2 * concurrency):  # warm up
            send(i)
        started = time.perf_counter()
        with ThreadPoolExecutor(concurrency) as pool:
            latencies = sorted(pool.map(send, range(total)))
        wall = time.perf_counter() - started
        info = json.loads(urllib.request.urlopen(url + "/info").read())
    finally:
        server.terminate()
        server.wait(timeout=30)
    rate = total / wall
    print(f"server: {total} requests, {concurrency} at a time: {rate:.0f} requests/s, p50 "
          f"{statistics.median(latencies) * 1000:.1f} ms, p99 {latencies[int(0.99 * total)] * 1000:.1f} ms "
          f"(mean batch {info['inputs'] / max(1, info['batches']):.1f})")
    with tempfile.TemporaryDirectory() as tmp:
        listed = Path(tmp) / "inputs.txt"
        listed.write_text("\n".join(inputs[i % len(inputs)] for i in range(total)) + "\n")
        started = time.perf_counter()
        subprocess.run([sys.executable, "predict.py", f"ckpt_path={ckpt}", f"inputs={listed}", "device=cpu"],
                       cwd=ROOT, capture_output=True, check=True)
        one = time.perf_counter() - started
    print(f"predict.py inputs=<file of {total}>: {one:.1f} s, {total / one:.0f} predictions/s "
          f"(server {rate / (total / one):.1f}x)")
    times = []
    for x in inputs[:per_call]:
        started = time.perf_counter()
        subprocess.run([sys.executable, "predict.py", f"ckpt_path={ckpt}", f"input={x}", "device=cpu"], cwd=ROOT,
                       capture_output=True, check=True)
        times.append(time.perf_counter() - started)
    each = statistics.median(times)
    print(f"predict.py per input: {each:.2f} s a call (median of {len(times)}), {1 / each:.2f} predictions/s; "
          f"{total} would take {total * each / 60:.0f} min (server {rate * each:.0f}x)")


if __name__ == "__main__":
    main(sys.argv[1:])
