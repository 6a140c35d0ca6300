"""POST /v1/reconcile on a real server: one photo plus the recorded quantity -> count and decision."""

from __future__ import annotations

import httpx
import pytest

from bintally.reconcile import ReconcilePolicy, reconcile

JPEG = {"content-type": "image/jpeg"}


@pytest.fixture(scope="module")
def client(open_server):
    with httpx.Client(base_url=open_server.url, timeout=60) as c:
        yield c


def test_decision_matches_the_library_for_every_expected_quantity(client, photos):
    """For each recorded quantity 0..6 the route answers the count, P(count = expected) and the decision
    `bintally.reconcile` makes from the same probabilities with the server's default policy."""
    photo = photos["00588"]
    counted = client.post("/v1/count", content=photo, headers=JPEG).json()
    for expected in range(7):
        response = client.post(f"/v1/reconcile?expected_quantity={expected}", content=photo, headers=JPEG)
        assert response.status_code == 200, response.text
        answer = response.json()
        want = reconcile(counted["probabilities"], expected, ReconcilePolicy())
        assert answer["count"] == counted["count"] and answer["decision"] == want.decision
        assert answer["match_probability"] == pytest.approx(want.match_probability, abs=1e-6)
        assert answer["model"] == counted["model"]


def test_multipart_upload_reconciles_too(client, photos):
    response = client.post("/v1/reconcile", params={"expected_quantity": 3}, files={"file": ("bin.jpg", photos["00585"], "image/jpeg")})
    assert response.status_code == 200 and response.json()["decision"] in ("accept", "review", "mismatch")


@pytest.mark.parametrize(
    "query, body, headers, status",
    [
        ("", b"", JPEG, 422),  # no expected_quantity
        ("?expected_quantity=-1", b"", JPEG, 422),  # negative
        ("?expected_quantity=three", b"", JPEG, 422),  # not an integer
        ("?expected_quantity=3", b"not a photo", JPEG, 400),
        ("?expected_quantity=3", b'{"instances": [{"image_base64": "AA=="}]}', {"content-type": "application/json"}, 422),
    ],
    ids=["missing", "negative", "not-int", "bad-image", "batch"],
)
def test_bad_requests_get_clear_errors_and_the_server_keeps_serving(client, photos, query, body, headers, status):
    response = client.post(f"/v1/reconcile{query}", content=body or photos["00585"], headers=headers)
    assert response.status_code == status and "message" in response.json()["error"]
    assert client.post("/v1/reconcile?expected_quantity=2", content=photos["00585"], headers=JPEG).status_code == 200
