"""The HTTP service end to end: a real uvicorn server on 127.0.0.1, a real artifact, real bin photos, moto S3."""

from __future__ import annotations

import asyncio
import base64
import io
import json
import re
import select
import shutil
import socket
import time

import boto3
import httpx
import numpy as np
import pytest
import torch
from PIL import Image

from bintally.data.images import decode_image
from bintally.model.artifact import load_artifact, write_spec
from bintally.model.calibration import softmax
from bintally.model.preprocess import prepare
from bintally.model.quantize import Int8Config, export_int8

KEY = "serve-test-key"
JPEG = {"content-type": "image/jpeg"}


@pytest.fixture(scope="module")
def bucket(s3_endpoint, photos) -> str:
    """Bucket `bins`: the photos under allowed/ (on the allow-list) and under secret/ (not)."""
    s3 = boto3.client("s3", endpoint_url=s3_endpoint)
    s3.create_bucket(Bucket="bins")
    for bin_id, data in photos.items():
        for prefix in ("allowed", "secret"):
            s3.put_object(Bucket="bins", Key=f"{prefix}/{bin_id}.jpg", Body=data)
    return "bins"


@pytest.fixture(scope="module")
def server(start_server, s3_endpoint, bucket, tmp_path_factory):
    """API key required; s3_uri under s3://bins/allowed/; url prefixes on the loopback host, which the address
    rule must still refuse."""
    key_file = tmp_path_factory.mktemp("keys") / "api-keys"
    key_file.write_text(f"{KEY}\n")
    prefixes = ["s3://bins/allowed/", "http://127.0.0.1:", "http://localhost:"]
    return start_server(api_key_file=str(key_file), allow_uri_prefixes=prefixes, endpoint_url=s3_endpoint)


@pytest.fixture
def client(server):
    with httpx.Client(base_url=server.url, headers={"x-api-key": KEY}, timeout=60) as c:
        yield c


@pytest.fixture(scope="module")
def photo(photos) -> bytes:
    return photos["00585"]


@pytest.fixture(scope="module")
def huge_png() -> bytes:
    """A 60-megapixel flat-grey PNG: tens of KB on disk, a decompression bomb in memory."""
    buf = io.BytesIO()
    Image.new("L", (7746, 7746), 128).save(buf, format="PNG")
    return buf.getvalue()


def assert_count(answer: dict) -> None:
    assert answer["count"] in (1, 2, 3, 4, 5)
    assert set(answer["probabilities"]) == {"1", "2", "3", "4", "5"}
    assert sum(answer["probabilities"].values()) == pytest.approx(1.0, abs=1e-6)
    assert answer["confidence"] == pytest.approx(max(answer["probabilities"].values()))
    assert answer["model"] == {"name": "small-test", "version": "1"}


def assert_still_serving(client: httpx.Client, photo: bytes) -> None:
    response = client.post("/v1/count", content=photo, headers=JPEG)
    assert response.status_code == 200, response.text
    assert_count(response.json())


def png_of(photo: bytes) -> bytes:
    buf = io.BytesIO()
    decode_image(photo).save(buf, format="PNG")  # lossless: the same pixels as the JPEG decodes to
    return buf.getvalue()


def test_every_content_type_gives_the_same_answer(client, photo):
    """The same photo as raw JPEG, PNG, multipart, base64 JSON and s3_uri JSON: every answer is a valid count,
    and all equal the raw-JPEG answer."""
    requests = {
        "jpeg": {"content": photo, "headers": JPEG},
        "png": {"content": png_of(photo), "headers": {"content-type": "image/png"}},
        "multipart": {"files": {"file": ("bin.jpg", photo, "image/jpeg")}},
        "base64": {"json": {"image_base64": base64.b64encode(photo).decode()}},
        "s3_uri": {"json": {"s3_uri": "s3://bins/allowed/00585.jpg"}},
    }
    answers = {}
    for name, kwargs in requests.items():
        response = client.post("/v1/count", **kwargs)
        assert response.status_code == 200, (name, response.text)
        answers[name] = response.json()
        assert_count(answers[name])
    for name, answer in answers.items():
        assert answer["count"] == answers["jpeg"]["count"], name
        for count, p in answer["probabilities"].items():
            assert p == pytest.approx(answers["jpeg"]["probabilities"][count], abs=1e-5), name


def test_instances_fail_one_by_one(client, photo):
    """A batch of four instances, two good and two bad (outside the allow-list; an unknown field): 200, the good
    ones counted, each bad one answered with its own error in its place."""
    body = {
        "instances": [
            {"image_base64": base64.b64encode(photo).decode()},
            {"s3_uri": "s3://bins/secret/00585.jpg"},
            {"s3_uri": "s3://bins/allowed/00588.jpg", "colour": "red"},
            {"s3_uri": "s3://bins/allowed/00588.jpg"},
        ]
    }
    response = client.post("/v1/count", json=body)
    assert response.status_code == 200, response.text
    first, outside, unknown, last = response.json()["predictions"]
    assert_count(first)
    assert_count(last)
    assert outside["error"]["code"] == "forbidden_uri"
    assert unknown["error"]["code"] == "invalid_request" and "colour" in unknown["error"]["message"]


def test_invocations_answers_logits_matching_count(client, photo, artifact_dir):
    """SageMaker /invocations with raw JPEG and with {"s3_uri"}: [[5 logits]] whose softmax equals /v1/count's
    probabilities for the same photo, and those are the network's logits at the artifact's temperature
    (computed here with PyTorch); /ping answers 200."""
    expected = client.post("/v1/count", content=photo, headers=JPEG).json()["probabilities"]
    artifact = load_artifact(artifact_dir)
    x = torch.from_numpy(prepare(decode_image(photo), artifact.spec.preprocess))[None]
    with torch.no_grad():
        raw = artifact.torch_model()(x)[0].numpy()
    temperature = artifact.spec.temperature
    assert temperature != 1 and softmax(raw) != pytest.approx(softmax(raw, temperature), abs=1e-4)  # it makes a difference
    assert softmax(raw, temperature) == pytest.approx([expected[str(c)] for c in range(1, 6)], abs=1e-4)
    for kwargs in ({"content": photo, "headers": JPEG}, {"json": {"s3_uri": "s3://bins/allowed/00585.jpg"}}):
        response = client.post("/invocations", **kwargs)
        assert response.status_code == 200, response.text
        (logits,) = response.json()
        probs = np.exp(logits) / np.exp(logits).sum()
        assert probs == pytest.approx([expected[str(c)] for c in range(1, 6)], abs=1e-5)
    assert client.get("/ping").status_code == 200


def bad_requests(photo: bytes, huge_png: bytes) -> dict[str, tuple[str, dict, int, str]]:
    """name -> (route, request, expected status, expected error code)."""
    return {
        "truncated jpeg": ("/v1/count", {"content": photo[: len(photo) // 2], "headers": JPEG}, 400, "bad_image"),
        "text as image/jpeg": ("/v1/count", {"content": b"hello, I am not a photo", "headers": JPEG}, 400, "bad_image"),
        "empty body": ("/v1/count", {"content": b"", "headers": JPEG}, 400, "bad_image"),
        "60-megapixel png": ("/v1/count", {"content": huge_png, "headers": {"content-type": "image/png"}}, 413, "too_large"),
        "20 MB body": ("/v1/count", {"content": photo * (20 * 2**20 // len(photo) + 1), "headers": JPEG}, 413, "too_large"),
        "malformed json": ("/v1/count", {"content": b'{"s3_uri": ', "headers": {"content-type": "application/json"}}, 400, "bad_json"),
        "unknown field": ("/v1/count", {"json": {"s3_uri": "s3://bins/allowed/00585.jpg", "size": 3}}, 422, "invalid_request"),
        "two sources": ("/v1/count", {"json": {"s3_uri": "s3://bins/allowed/00585.jpg", "url": "http://x/y"}}, 422, "invalid_request"),
        "bad base64": ("/v1/count", {"json": {"image_base64": "not base64!"}}, 400, "bad_image"),
        "s3_uri outside allow-list": ("/v1/count", {"json": {"s3_uri": "s3://bins/secret/00585.jpg"}}, 403, "forbidden_uri"),
        "s3_uri as file://": ("/v1/count", {"json": {"s3_uri": "file:///etc/passwd"}}, 403, "forbidden_uri"),
        "missing object": ("/v1/count", {"json": {"s3_uri": "s3://bins/allowed/nope.jpg"}}, 404, "not_found"),
        "url to 127.0.0.1": ("/v1/count", {"json": {"url": "http://127.0.0.1:9/photo.jpg"}}, 403, "forbidden_uri"),
        "url to localhost": ("/v1/count", {"json": {"url": "http://localhost:9/photo.jpg"}}, 403, "forbidden_uri"),
        "url as file://": ("/v1/count", {"json": {"url": "file:///etc/passwd"}}, 403, "forbidden_uri"),
        "unsupported type": ("/v1/count", {"content": b"a,b", "headers": {"content-type": "text/csv"}}, 415, "unsupported_media_type"),
        "multipart without file": ("/v1/count", {"data": {"photo": "x"}, "files": {"other": ("a.jpg", photo)}}, 422, "invalid_request"),
        "wrong api key": ("/v1/count", {"content": photo, "headers": {**JPEG, "x-api-key": "guess"}}, 401, "unauthorized"),
        "invocations multipart": ("/invocations", {"files": {"file": ("a.jpg", photo)}}, 415, "unsupported_media_type"),
        "invocations url": ("/invocations", {"json": {"url": "http://127.0.0.1:9/x.jpg"}}, 422, "invalid_request"),
    }


@pytest.mark.parametrize("case", list(bad_requests(b"x", b"x")))
def test_bad_input_gets_its_status_and_the_server_keeps_serving(client, photo, huge_png, case):
    """Each bad request gets its status and the JSON error shape (never a 500), and a good request right after
    still succeeds."""
    route, kwargs, status, code = bad_requests(photo, huge_png)[case]
    response = client.post(route, **kwargs)
    assert response.status_code == status, response.text
    assert response.json()["error"]["code"] == code
    assert response.json()["error"]["message"]
    assert_still_serving(client, photo)


def test_api_key_as_bearer_or_missing(server, client, photo):
    """The key as `Authorization: Bearer` is accepted; no key at all is 401 with WWW-Authenticate on both
    inference routes; the page and health routes stay open."""
    bearer = httpx.post(f"{server.url}/v1/count", content=photo, headers={**JPEG, "authorization": f"Bearer {KEY}"})
    assert bearer.status_code == 200
    for route in ("/v1/count", "/invocations"):
        response = httpx.post(f"{server.url}{route}", content=photo, headers=JPEG)
        assert response.status_code == 401
        assert response.headers["www-authenticate"] == "Bearer"
    assert httpx.get(f"{server.url}/").status_code == 200
    assert httpx.get(f"{server.url}/healthz").status_code == 200
    assert_still_serving(client, photo)


def test_operational_routes(client, photo):
    """healthz, readyz (with the model), docs and OpenAPI, and Prometheus metrics: requests by route and status,
    latency, batch sizes, queue depth, model version."""
    client.post("/v1/count", content=photo, headers=JPEG)
    client.post("/v1/count", content=b"nope", headers=JPEG)
    assert client.get("/healthz").json() == {"status": "alive"}
    ready = client.get("/readyz").json()
    assert ready["model"] == {"name": "small-test", "version": "1"} and ready["backend"] == "onnx"
    assert ready["precision"] == "fp32"  # the test artifact has no int8 graph
    assert client.get("/docs").status_code == 200
    assert "/v1/count" in client.get("/openapi.json").json()["paths"]
    metrics = client.get("/metrics").text
    for series in (
        'bintally_requests_total{route="/v1/count",status="200"}',
        'bintally_requests_total{route="/v1/count",status="400"}',
        'bintally_request_seconds_bucket{le="0.005",route="/v1/count"}',
        "bintally_batch_size_count",
        "bintally_queue_depth",
        'bintally_model_info{name="small-test",version="1"}',
    ):
        assert series in metrics, series


def test_not_ready_until_the_model_loads(start_server, photo):
    """A server whose model cannot load stays alive (healthz 200) but readyz, ping and count answer 503 with
    Retry-After and the reason."""
    broken = start_server(wait_ready=False, model="/nonexistent/model")
    for _ in range(50):
        ready = httpx.get(f"{broken.url}/readyz")
        if "failed" in ready.text:
            break
        time.sleep(0.1)
    assert ready.status_code == 503 and "no model.json" in ready.json()["error"]["message"]
    assert ready.headers["retry-after"]
    assert httpx.get(f"{broken.url}/ping").status_code == 503
    assert httpx.get(f"{broken.url}/healthz").status_code == 200
    response = httpx.post(f"{broken.url}/v1/count", content=photo, headers=JPEG)
    assert response.status_code == 503 and response.json()["error"]["code"] == "not_ready"


def test_thresholds_that_do_not_fit_the_artifacts_policy_are_reported_not_lost(start_server):
    """Tried: a server whose accept_at (0.03) is below the mismatch threshold of the artifact's policy (the
    defaults: flag at P(count = recorded) <= 0.05), built as a library user builds one (no CLI check before).
    Must hold: /readyz turns from 'still loading' to 503 naming the conflict, not 'still loading' forever."""
    server = start_server(wait_ready=False, accept_at=0.03)
    deadline = time.monotonic() + 60
    while "still loading" in (ready := httpx.get(f"{server.url}/readyz")).text and time.monotonic() < deadline:
        time.sleep(0.2)
    assert ready.status_code == 503 and "do not fit" in ready.json()["error"]["message"], ready.text


def test_onnx_and_torch_backends_agree(start_server, open_server, photos):
    """Each real photo counted by the ONNX server and by a PyTorch server: same count, probabilities within 1e-4."""
    torch_server = start_server(backend="torch")
    for data in photos.values():
        onnx = httpx.post(f"{open_server.url}/v1/count", content=data, headers=JPEG).json()
        torch = httpx.post(f"{torch_server.url}/v1/count", content=data, headers=JPEG).json()
        assert onnx["count"] == torch["count"]
        assert list(onnx["probabilities"].values()) == pytest.approx(list(torch["probabilities"].values()), abs=1e-4)


def test_an_int8_server_answers_like_the_fp32_one(start_server, open_server, artifact_dir, small_manifest, photos, tmp_path):
    """Tried: the test model quantised to int8, served with --precision int8. Must hold: /readyz says int8, and every
    real photo gets a 200 with probabilities near the fp32 server's (an untrained head: within 0.5)."""
    model = str(tmp_path / "model")
    shutil.copytree(artifact_dir, model)
    write_spec(model, load_artifact(model).spec.model_copy(update={"train_config": {"manifest": str(small_manifest)}}))
    export_int8(load_artifact(model), Int8Config(calibration_photos=8, check_photos=8, max_accuracy_drop=1.0))
    int8_server = start_server(model=model, precision="int8")
    assert httpx.get(f"{int8_server.url}/readyz").json()["precision"] == "int8"
    for data in photos.values():
        int8 = httpx.post(f"{int8_server.url}/v1/count", content=data, headers=JPEG)
        fp32 = httpx.post(f"{open_server.url}/v1/count", content=data, headers=JPEG).json()
        assert int8.status_code == 200
        assert list(int8.json()["probabilities"].values()) == pytest.approx(list(fp32["probabilities"].values()), abs=0.5)


async def _burst(url: str, bodies: list[bytes]) -> list[httpx.Response]:
    async with httpx.AsyncClient(timeout=60, limits=httpx.Limits(max_connections=len(bodies))) as c:
        return await asyncio.gather(*(c.post(f"{url}/v1/count", content=b, headers=JPEG) for b in bodies))


def _metric(text: str, name: str) -> float:
    return float(re.search(rf"^{re.escape(name)} (\S+)$", text, re.M).group(1))


def test_concurrent_requests_are_batched(start_server, photos):
    """Sixteen simultaneous requests to a server that waits up to 200 ms to fill batches of 8: all succeed, and
    fewer forward passes than requests ran (the batch-size histogram has batches above 1)."""
    server = start_server(batching={"max_batch": 8, "max_wait_ms": 200})
    before = httpx.get(f"{server.url}/metrics").text
    responses = asyncio.run(_burst(server.url, list(photos.values()) * 4))
    assert all(r.status_code == 200 for r in responses)
    after = httpx.get(f"{server.url}/metrics").text
    batches = _metric(after, "bintally_batch_size_count") - _metric(before, "bintally_batch_size_count")
    images = _metric(after, "bintally_batch_size_sum") - _metric(before, "bintally_batch_size_sum")
    singles = _metric(after, 'bintally_batch_size_bucket{le="1.0"}') - _metric(before, 'bintally_batch_size_bucket{le="1.0"}')
    assert images == 16 and batches < 16 and singles < batches


def test_full_queue_answers_503_with_retry_after(start_server, photos):
    """A server with room for one waiting image, hit by 48 simultaneous requests: the overflow gets 503
    `overloaded` with Retry-After, the rest 200, nothing else; afterwards a request succeeds."""
    server = start_server(batching={"max_batch": 1, "max_wait_ms": 0, "queue_size": 1})
    responses = asyncio.run(_burst(server.url, list(photos.values()) * 12))
    refused = [r for r in responses if r.status_code == 503]
    assert refused and all(r.json()["error"]["code"] == "overloaded" and r.headers["retry-after"] for r in refused)
    assert {r.status_code for r in responses} <= {200, 503}
    assert httpx.post(f"{server.url}/v1/count", content=photos["00585"], headers=JPEG).status_code == 200


class BodyProbe:
    """Wraps the whole app: how many body bytes the server had read when it started its response."""

    def __init__(self, app):
        self.app, self.read, self.read_when_answering = app, 0, None

    async def __call__(self, scope, receive, send):
        async def counted():
            message = await receive()
            self.read += len(message.get("body", b""))
            return message

        async def watched(message):
            if message["type"] == "http.response.start" and scope["type"] == "http":
                self.read_when_answering = self.read
            await send(message)

        await self.app(scope, counted, watched)


def stream_until_answered(url: str, chunk: int, most: int) -> tuple[bytes, int]:
    """POST a chunked body with no Content-Length, `chunk` bytes at a time, reading while sending (as curl does):
    stop sending as soon as an answer arrives or `most` bytes went out. Returns (the whole answer, bytes sent)."""
    host, port = url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=30) as s:
        s.sendall(b"POST /v1/count HTTP/1.1\r\nHost: x\r\nContent-Type: image/jpeg\r\nTransfer-Encoding: chunked\r\n\r\n")
        sent = 0
        while sent < most and not select.select([s], [], [], 0)[0]:
            s.sendall(f"{chunk:x}\r\n".encode() + b"\xff" * chunk + b"\r\n")
            sent += chunk
        answer = b""
        while b"\r\n\r\n" not in answer:
            answer += s.recv(65536)
        head, body = answer.split(b"\r\n\r\n", 1)
        length = int(re.search(rb"content-length: (\d+)", head, re.IGNORECASE).group(1))
        while len(body) < length:
            body += s.recv(65536)
        return head + b"\r\n\r\n" + body, sent


def test_a_streamed_body_past_the_limit_is_refused_having_read_no_more_than_the_limit(start_server, photo):
    """A chunked upload with no Content-Length keeps growing, 64 KiB at a time, toward 64 MiB, past a 1 MiB limit.
    Must hold: the answer is 413 with the JSON error, sent when the server had read at most the limit plus what
    arrived in the read that crossed it (uvicorn reads up to 256 KiB at once); the client could stop long before
    64 MiB; and the server answers the next request."""
    limit, chunk = 2**20, 64 * 2**10
    probe: list[BodyProbe] = []
    server = start_server(max_body_bytes=limit, wrap=lambda app: probe.append(BodyProbe(app)) or probe[0])
    answer, sent = stream_until_answered(server.url, chunk, 64 * 2**20)
    head, body = answer.split(b"\r\n\r\n", 1)
    assert head.startswith(b"HTTP/1.1 413"), head
    assert json.loads(body)["error"]["code"] == "too_large"
    assert limit < probe[0].read_when_answering <= limit + 256 * 2**10
    assert sent < 32 * 2**20, "the client had to send far past the limit before it heard the 413"
    with httpx.Client(base_url=server.url, timeout=60) as client:
        assert_still_serving(client, photo)
