"""A model with an open top class ("4 or more") served for real: the answers name it, and records of 4 or more
are never accepted."""

from __future__ import annotations

import httpx
import pytest

from tests.conftest import OPEN_TOP_LOGITS


@pytest.fixture(scope="module")
def open_top_server(start_server, open_top_artifact):
    return start_server(model=open_top_artifact)


def _post(server, photo: bytes, route: str = "/v1/count") -> dict:
    response = httpx.post(f"{server.url}{route}", content=photo, headers={"content-type": "image/jpeg"}, timeout=60)
    assert response.status_code == 200, response.text
    return response.json()


def test_the_count_names_the_open_class(open_top_server, photos):
    answer = _post(open_top_server, next(iter(photos.values())))
    assert answer["count"] == 4 and answer["at_least"] is True
    assert list(answer["probabilities"]) == ["0", "1", "2", "3", "4+"]
    assert answer["probabilities"]["4+"] == pytest.approx(0.80, abs=0.01)
    assert len(_post(open_top_server, next(iter(photos.values())), "/invocations")[0]) == len(OPEN_TOP_LOGITS)


@pytest.mark.parametrize(
    ("expected", "decision"),
    [
        (25, "review"),  # the photo says 4+ (80%): it cannot confirm an exact 25
        (4, "review"),  # 4 is "4 or more" here: never accepted, though P(4+) passes the default accept_at of 0.5
        (1, "mismatch"),  # P(1) = 0.04, under the default flag_at of 0.05
        (2, "review"),
    ],
)
def test_records_against_an_open_class_photo(open_top_server, photos, expected, decision):
    answer = _post(open_top_server, next(iter(photos.values())), f"/v1/reconcile?expected_quantity={expected}")
    assert answer["decision"] == decision and answer["count"] == 4 and answer["at_least"] is True
