"""POST /v1/reconcile on a real server: a photo plus the recorded quantity -> count and decision; batches."""

from __future__ import annotations

import base64
import csv
import shutil

import httpx
import pytest

from bintally.model.artifact import load_artifact, write_spec
from bintally.reconcile.policy import DecisionPolicy, reconcile
from bintally.reconcile.records import ReconcileConfig, reconcile_records

JPEG = {"content-type": "image/jpeg"}


@pytest.fixture(scope="module")
def client(open_server):
    with httpx.Client(base_url=open_server.url, timeout=60) as c:
        yield c


def test_decision_matches_the_library_for_every_expected_quantity(client, photos):
    """For each recorded quantity 0..6 the route answers the count, P(count = expected), P(off by 2+) and the
    decision `bintally.reconcile` makes from the same probabilities with the default policy (the test artifact
    has no fitted one)."""
    photo = photos["00588"]
    counted = client.post("/v1/count", content=photo, headers=JPEG).json()
    for expected in range(7):
        response = client.post(f"/v1/reconcile?expected_quantity={expected}", content=photo, headers=JPEG)
        assert response.status_code == 200, response.text
        answer = response.json()
        want = reconcile(counted["probabilities"], expected, DecisionPolicy())
        assert answer["count"] == counted["count"] and answer["decision"] == want.decision
        assert answer["match_probability"] == pytest.approx(want.match_probability, abs=1e-6)
        assert answer["far_probability"] == pytest.approx(want.far_probability, abs=1e-6)
        assert answer["confidence"] == pytest.approx(counted["confidence"], abs=1e-6)
        assert answer["model"] == counted["model"]


def test_multipart_upload_reconciles_too(client, photos):
    response = client.post("/v1/reconcile", params={"expected_quantity": 3}, files={"file": ("bin.jpg", photos["00585"], "image/jpeg")})
    assert response.status_code == 200 and response.json()["decision"] in ("accept", "review", "mismatch")


def test_a_batch_decides_each_instance_and_a_bad_one_fails_alone(client, photos):
    """Four instances: two good photos with their own recorded quantities, one that is not a photo, one without a
    quantity. Tried: one request. Must hold: 200, answers in order, the good ones equal to single requests, the bad
    ones each an error body (400 bad_image, 422 invalid_request) while the others are answered."""
    b64 = {k: base64.b64encode(v).decode() for k, v in photos.items()}
    body = {
        "instances": [
            {"image_base64": b64["00585"], "expected_quantity": 3},
            {"image_base64": base64.b64encode(b"not a photo").decode(), "expected_quantity": 2},
            {"image_base64": b64["00588"]},
            {"image_base64": b64["00589"], "expected_quantity": 12},
        ]
    }
    response = client.post("/v1/reconcile", json=body)
    assert response.status_code == 200, response.text
    first, broken, missing, outside = response.json()["predictions"]
    single = client.post("/v1/reconcile?expected_quantity=3", content=photos["00585"], headers=JPEG).json()
    assert first["decision"] == single["decision"] and first["match_probability"] == pytest.approx(single["match_probability"], abs=1e-6)
    assert broken["error"]["code"] == "bad_image"
    assert missing["error"]["code"] == "invalid_request" and "expected_quantity" in missing["error"]["message"]
    assert outside["decision"] == "review" and outside["expected_quantity"] == 12  # outside the model's counts
    # A query parameter is the default for instances without their own quantity.
    defaulted = client.post("/v1/reconcile?expected_quantity=2", json={"instances": [{"image_base64": b64["00588"]}]}).json()
    assert defaulted["predictions"][0]["expected_quantity"] == 2


@pytest.mark.parametrize(
    "query, body, headers, status",
    [
        ("", b"", JPEG, 422),  # no expected_quantity
        ("?expected_quantity=-1", b"", JPEG, 422),  # negative
        ("?expected_quantity=three", b"", JPEG, 422),  # not an integer
        ("?expected_quantity=3", b"not a photo", JPEG, 400),
        ("", b'{"instances": [{"image_base64": "AA==", "expected_quantity": -2}]}', {"content-type": "application/json"}, 200),
    ],
    ids=["missing", "negative", "not-int", "bad-image", "batch-negative"],
)
def test_bad_requests_get_clear_errors_and_the_server_keeps_serving(client, photos, query, body, headers, status):
    response = client.post(f"/v1/reconcile{query}", content=body or photos["00585"], headers=headers)
    assert response.status_code == status
    answer = response.json()
    error = answer["predictions"][0]["error"] if status == 200 else answer["error"]
    assert error["code"] in ("invalid_request", "bad_image") and error["message"]
    assert client.post("/v1/reconcile?expected_quantity=2", content=photos["00585"], headers=JPEG).status_code == 200


def test_explicit_thresholds_override_the_artifacts_policy(start_server, photos):
    """A server started with accept_at 0.01 and mismatch_at 0.001 (what `bintally serve --accept-at 0.01
    --mismatch-at 0.001` configures): every recorded count 1-5 is accepted (a fresh head gives each about 0.2)."""
    server = start_server(accept_at=0.01, mismatch_at=0.001)
    with httpx.Client(base_url=server.url, timeout=60) as c:
        decisions = {
            c.post(f"/v1/reconcile?expected_quantity={e}", content=photos["00594"], headers=JPEG).json()["decision"] for e in range(1, 6)
        }
    assert decisions == {"accept"}


def test_reconcile_and_serve_decide_with_the_artifacts_fitted_policy(start_server, open_server, artifact_dir, abid_root, photos, tmp_path):
    """Tried: the test artifact given a fitted policy whose thresholds sit between its own probabilities for one real
    photo: accept above the most likely count's second best, flag below the second least likely. Must hold: for
    recorded counts 1-5, `bintally reconcile`'s library path and /v1/reconcile both accept the most likely count,
    flag the least likely and send the rest to review (the default policy sends all five to review)."""
    counted = httpx.post(f"{open_server.url}/v1/count", content=photos["00594"], headers=JPEG, timeout=60).json()["probabilities"]
    ranked = sorted(counted, key=counted.__getitem__)  # least likely count first
    p = [counted[c] for c in ranked]
    assert p[1] - p[0] > 1e-3 and p[-1] - p[-2] > 1e-3, f"the photo's probabilities are too close to part: {counted}"
    fitted = DecisionPolicy(accept_at=(p[-1] + p[-2]) / 2, flag_at=(p[0] + p[1]) / 2, fitted={"split": "val", "bins": 40})
    model = str(tmp_path / "model")
    shutil.copytree(artifact_dir, model)
    write_spec(model, load_artifact(model).spec.model_copy(update={"decision_policy": fitted}))
    want = {int(c): "mismatch" if c == ranked[0] else "accept" if c == ranked[-1] else "review" for c in counted}
    assert {reconcile(counted, e, DecisionPolicy()).decision for e in want} == {"review"}

    records = tmp_path / "records.csv"
    uri = abid_root / "bin-images" / "00594.jpg"
    records.write_text("id,uri,expected_quantity\n" + "".join(f"r{e},{uri},{e}\n" for e in want))
    report = reconcile_records(ReconcileConfig(model=model, records=str(records), out=str(tmp_path / "decisions.csv")))
    used = report.policy
    assert (used.accept_at, used.flag_at, used.fitted) == (fitted.accept_at, fitted.flag_at, fitted.fitted)
    assert {int(r["expected_quantity"]): r["decision"] for r in csv.DictReader((tmp_path / "decisions.csv").open())} == want

    server = start_server(model=model)
    with httpx.Client(base_url=server.url, timeout=60) as c:
        served = {e: c.post(f"/v1/reconcile?expected_quantity={e}", content=photos["00594"], headers=JPEG).json()["decision"] for e in want}
    assert served == want
