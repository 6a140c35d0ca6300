"""HTTP load on 127.0.0.1: `bintally serve` (micro-batched ONNX Runtime, fp32 and, where the artifact has it,
int8) beside a plain FastAPI server that runs one PyTorch forward per request (the original endpoint's shape),
in the same run, on the same photos.

    python benchmarks/serving_load.py [--model RUN_DIR] [--clients 1 8 32 128] [--seconds 5] [--repeats 3]

Each server runs in its own process; for each concurrency level, that many clients post real bin JPEGs
back to back for `--seconds`. Reported: requests/s, p50/p95/p99 latency of the successful requests, and
errors (non-200 answers or failed connections); the median over `--repeats` runs of each.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import subprocess
import sys
import time
from pathlib import Path

import httpx
import numpy as np
import torch
import uvicorn
from _model import benchmark_artifact, photo_bytes
from _results import RESULTS, write_result
from fastapi import FastAPI, Request
from starlette.concurrency import run_in_threadpool

from bintally.data.images import decode_image
from bintally.hardware import hardware
from bintally.model.artifact import load_artifact
from bintally.model.predictor import score
from bintally.model.preprocess import prepare

JPEG = {"content-type": "image/jpeg"}


def baseline_app(model: str) -> FastAPI:
    """The plain server: decode, preprocess and one forward per request, on FastAPI's thread pool."""
    artifact = load_artifact(model)
    module, spec = artifact.torch_model("cpu"), artifact.spec

    def forward(body: bytes) -> dict:
        x = torch.from_numpy(prepare(decode_image(body), spec.preprocess))[None]
        with torch.inference_mode():
            return score(module(x)[0].numpy(), spec.classes).model_dump()

    app = FastAPI()

    @app.post("/v1/count")
    async def count(request: Request) -> dict:
        return await run_in_threadpool(forward, await request.body())

    @app.get("/readyz")
    async def readyz() -> dict:
        return {"status": "ready"}

    return app


def start_server(kind: str, model: str, port: int) -> subprocess.Popen:
    if kind.startswith("bintally serve"):
        precision = kind.rsplit(" ", 1)[-1]
        cmd = [str(Path(sys.executable).parent / "bintally"), "serve", model, "--port", str(port), "--precision", precision]
    else:
        cmd = [sys.executable, __file__, "--baseline-server", "--model", model, "--port", str(port)]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/readyz").status_code == 200:
                return proc
        except httpx.TransportError:
            pass
        time.sleep(0.5)
    proc.kill()
    raise TimeoutError(f"{kind} did not become ready")


async def load(url: str, clients: int, seconds: float, photos: list[bytes]) -> dict:
    latencies: list[float] = []
    errors = 0

    async def client(c: httpx.AsyncClient, offset: int, stop_at: float) -> None:
        nonlocal errors
        i = offset
        while time.perf_counter() < stop_at:
            start = time.perf_counter()
            try:
                ok = (await c.post(url, content=photos[i % len(photos)], headers=JPEG)).status_code == 200
            except httpx.HTTPError:
                ok = False
            if ok:
                latencies.append(time.perf_counter() - start)
            else:
                errors += 1
            i += clients

    async with httpx.AsyncClient(timeout=60, limits=httpx.Limits(max_connections=clients)) as c:
        start = time.perf_counter()
        await asyncio.gather(*(client(c, k, start + seconds) for k in range(clients)))
        elapsed = time.perf_counter() - start
    ms = np.percentile(np.array(latencies) * 1000, [50, 95, 99]) if latencies else [float("nan")] * 3
    return {"rps": len(latencies) / elapsed, "p50_ms": ms[0], "p95_ms": ms[1], "p99_ms": ms[2], "errors": errors}


def median_of(runs: list[dict]) -> dict:
    return {k: statistics.median(r[k] for r in runs) for k in runs[0]}


def bench(kind: str, model: str, port: int, args, photos: list[bytes]) -> list[dict]:
    proc = start_server(kind, model, port)
    url = f"http://127.0.0.1:{port}/v1/count"
    try:
        asyncio.run(load(url, 8, 2.0, photos))  # warm-up, not measured
        rows = []
        for clients in args.clients:
            runs = [asyncio.run(load(url, clients, args.seconds, photos)) for _ in range(args.repeats)]
            rows.append({"server": kind, "clients": clients, **median_of(runs)})
            print(f"  {kind}, {clients} clients: {rows[-1]['rps']:.1f} req/s", file=sys.stderr)
        return rows
    finally:
        proc.terminate()
        proc.wait(30)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", help="model artifact (default: Lite0 at 224 px from packaged weights)")
    parser.add_argument("--clients", type=int, nargs="+", default=[1, 8, 32, 128])
    parser.add_argument("--seconds", type=float, default=5.0, help="per level and repeat")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--photos", type=int, default=64, help="distinct real JPEGs to post")
    parser.add_argument("--port", type=int, default=8765)
    parser.add_argument("--json", type=Path, default=RESULTS / "serving-load.json")
    parser.add_argument("--baseline-server", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.baseline_server:
        uvicorn.run(baseline_app(args.model), host="127.0.0.1", port=args.port, log_level="warning")
        return

    started = time.monotonic()
    model, photos = benchmark_artifact(args.model), photo_bytes(args.photos)
    kinds = ["bintally serve fp32", *(["bintally serve int8"] if load_artifact(model).int8_onnx_path else []), "plain FastAPI"]
    rows = [row for kind in kinds for row in bench(kind, model, args.port, args, photos)]
    rows.sort(key=lambda r: (r["clients"], r["server"]))
    print(hardware().describe())
    print("| clients | server | req/s | p50 ms | p95 ms | p99 ms | errors |\n| ---: | --- | ---: | ---: | ---: | ---: | ---: |")
    for r in rows:
        print(
            f"| {r['clients']} | {r['server']} | {r['rps']:.1f} | {r['p50_ms']:.0f} | {r['p95_ms']:.0f} "
            f"| {r['p99_ms']:.0f} | {r['errors']:.0f} |"
        )
    write_result(args.json, {"rows": rows, "seconds_per_level": args.seconds, "repeats": args.repeats}, started, "serving_load.py")


if __name__ == "__main__":
    main()
