"""HTTP load on 127.0.0.1: `bintally serve` (micro-batched ONNX Runtime, fp32 and, where the artifact has it,
int8) beside a plain FastAPI server that runs one PyTorch forward per request (the original endpoint's shape),
in the same run, on the same photos.

    python benchmarks/serving_load.py [--model RUN_DIR] [--clients 1 8 32 128] [--seconds 5] [--repeats 3]

Each server runs in its own process; for each concurrency level, that many connections post real bin JPEGs
back to back for `--seconds`. Reported: requests/s, p50/p95/p99 latency, and errors (non-2xx answers, failed
connections, requests over 60 s); the median over `--repeats` runs of each.

The load comes from wrk (`apt-get install wrk`), a C load generator with one event-loop thread. A Python client
(httpx, asyncio) on the same 2 cores was not up to it: at 128 connections it starved about a quarter of its own
requests for the whole run (p95 5 s while the server answered every request in under 1 s by its own latency
histogram), and showed an int8 server slower than fp32 where wrk measures it 1.6x faster.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import torch
import uvicorn
from _model import benchmark_artifact, photo_paths
from _results import RESULTS, write_result
from fastapi import FastAPI, Request
from starlette.concurrency import run_in_threadpool

from bintally.data.images import decode_image
from bintally.hardware import hardware
from bintally.model.artifact import load_artifact
from bintally.model.predictor import score
from bintally.model.preprocess import prepare


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


# wrk's Lua hooks: each request posts the next photo named on the command line; at the end, one JSON line.
WRK_SCRIPT = """
local bodies, i = {}, 0
function init(args)
  for k, path in ipairs(args) do local f = io.open(path, "rb"); bodies[k] = f:read("*all"); f:close() end
end
function request()
  i = i % #bodies + 1
  return wrk.format("POST", nil, {["Content-Type"] = "image/jpeg"}, bodies[i])
end
function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format('{"requests": %d, "us": %d, "errors": %d, "p50_us": %d, "p95_us": %d, "p99_us": %d}\\n',
    summary.requests, summary.duration, e.connect + e.read + e.write + e.status + e.timeout,
    latency:percentile(50), latency:percentile(95), latency:percentile(99)))
end
"""


def load(url: str, clients: int, seconds: float, photos: list[Path], script: Path) -> dict:
    """`clients` connections posting `photos` back to back for `seconds` (wrk, one thread)."""
    cmd = ["wrk", "-t1", f"-c{clients}", f"-d{seconds:g}s", "--timeout", "60s", "-s", str(script), url, "--", *map(str, photos)]
    out = json.loads(subprocess.run(cmd, check=True, capture_output=True, text=True).stdout.strip().splitlines()[-1])
    ok = out["requests"] - out["errors"]
    return {
        "rps": ok / (out["us"] / 1e6),
        **{f"p{q}_ms": out[f"p{q}_us"] / 1000 for q in (50, 95, 99)},
        "errors": out["errors"],
    }


def wrk_version() -> str:
    return subprocess.run(["wrk", "-v"], capture_output=True, text=True).stdout.splitlines()[0].strip()


def median_of(runs: list[dict]) -> dict:
    return {k: statistics.median(r[k] for r in runs) for k in runs[0]}


def bench(kind: str, model: str, port: int, args, photos: list[Path], script: Path) -> list[dict]:
    proc = start_server(kind, model, port)
    url = f"http://127.0.0.1:{port}/v1/count"
    try:
        load(url, 8, 2.0, photos, script)  # warm-up, not measured
        rows = []
        for clients in args.clients:
            runs = [load(url, clients, args.seconds, photos, script) for _ in range(args.repeats)]
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

    if not shutil.which("wrk"):
        sys.exit("serving_load.py needs wrk as its load generator: apt-get install wrk")
    started = time.monotonic()
    model, photos = benchmark_artifact(args.model), photo_paths(args.photos)
    kinds = ["bintally serve fp32", *(["bintally serve int8"] if load_artifact(model).int8_onnx_path else []), "plain FastAPI"]
    with tempfile.NamedTemporaryFile("w", suffix=".lua") as script:
        script.write(WRK_SCRIPT)
        script.flush()
        rows = [row for kind in kinds for row in bench(kind, model, args.port, args, photos, Path(script.name))]
    rows.sort(key=lambda r: (r["clients"], r["server"]))
    print(hardware().describe())
    print("| clients | server | req/s | p50 ms | p95 ms | p99 ms | errors |\n| ---: | --- | ---: | ---: | ---: | ---: | ---: |")
    for r in rows:
        print(
            f"| {r['clients']} | {r['server']} | {r['rps']:.1f} | {r['p50_ms']:.0f} | {r['p95_ms']:.0f} "
            f"| {r['p99_ms']:.0f} | {r['errors']:.0f} |"
        )
    result = {"rows": rows, "seconds_per_level": args.seconds, "repeats": args.repeats, "load_generator": wrk_version()}
    write_result(args.json, result, started, "serving_load.py")


if __name__ == "__main__":
    main()
