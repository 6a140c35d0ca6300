"""The OpenAPI document is the contract: request bodies, error statuses and shapes, checked against the live server."""

from __future__ import annotations

import base64

import httpx
import jsonschema
import pytest
from openapi_spec_validator import validate

from bintally.serve.errors import ERROR_STATUSES

PHOTO_ROUTES = {
    "/v1/count": {"image/jpeg", "image/png", "multipart/form-data", "application/json"},
    "/v1/reconcile": {"image/jpeg", "image/png", "multipart/form-data", "application/json"},
    "/invocations": {"image/jpeg", "image/png", "application/json"},
}


@pytest.fixture(scope="module")
def live(start_server):
    return start_server()


@pytest.fixture(scope="module")
def document(live) -> dict:
    doc = httpx.get(f"{live.url}/openapi.json").json()
    validate(doc)  # a valid OpenAPI 3.1 document, or this raises
    return doc


@pytest.mark.parametrize("route", list(PHOTO_ROUTES))
def test_photo_routes_document_their_bodies_and_every_error(document, route):
    """Each route that takes a photo lists the media types it accepts, and every error status it can answer
    (400, 401, 403, 404, 413, 415, 422, 503 at least) with the one error shape."""
    op = document["paths"][route]["post"]
    assert set(op["requestBody"]["content"]) == PHOTO_ROUTES[route]
    errors = {int(s): r for s, r in op["responses"].items() if int(s) >= 400}
    assert {400, 401, 403, 404, 413, 415, 422, 503} <= set(errors) <= set(ERROR_STATUSES)
    for response in errors.values():
        assert response["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/ErrorResponse"}


@pytest.mark.parametrize(
    ("route", "request_kwargs", "status"),
    [
        ("/v1/count", {"content": b"not a photo", "headers": {"content-type": "image/jpeg"}}, 400),
        ("/v1/count", {"content": b"a,b", "headers": {"content-type": "text/csv"}}, 415),
        ("/v1/reconcile?expected_quantity=-1", {"content": b"x", "headers": {"content-type": "image/jpeg"}}, 422),
        ("/invocations", {"json": {"s3_uri": "s3://nowhere/x.jpg"}}, 403),
    ],
)
def test_error_answers_match_the_documented_schema(live, document, route, request_kwargs, status):
    """What the server answers for bad input is what the document says: that status, and a body valid against
    the documented schema."""
    response = httpx.post(f"{live.url}{route}", **request_kwargs)
    assert response.status_code == status, response.text
    path = route.split("?")[0]
    schema = document["paths"][path]["post"]["responses"][str(status)]["content"]["application/json"]["schema"]
    jsonschema.validate(response.json(), {**schema, "components": document["components"]})


def test_ping_is_documented_and_answered_as_an_empty_200(live, document):
    """SageMaker's health check: the document promises a 200 with no body, and that is what comes back."""
    assert document["paths"]["/ping"]["get"]["responses"]["200"].get("content", {}) == {}
    response = httpx.get(f"{live.url}/ping")
    assert response.status_code == 200 and response.content == b""


def test_a_photo_answer_matches_the_documented_schema(live, document, photos):
    """A good answer validates against the 200 schema of /v1/count."""
    response = httpx.post(f"{live.url}/v1/count", content=photos["00585"], headers={"content-type": "image/jpeg"})
    assert response.status_code == 200
    schema = document["paths"]["/v1/count"]["post"]["responses"]["200"]["content"]["application/json"]["schema"]
    jsonschema.validate(response.json(), {**schema, "components": document["components"]})


@pytest.mark.parametrize("route", ["/v1/count", "/v1/reconcile?expected_quantity=2"])
def test_an_empty_base64_photo_is_schema_invalid_and_refused_as_such(live, document, route):
    """Tried: `{"image_base64": ""}`. Must hold: the documented JSON body refuses it (minLength 1), and so does the
    server, with the documented 422 (it names no photo, as a schema violation)."""
    path = route.split("?")[0]
    schema = document["paths"][path]["post"]["requestBody"]["content"]["application/json"]["schema"]
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({"image_base64": ""}, {**schema, "components": document["components"]})
    response = httpx.post(f"{live.url}{route}", json={"image_base64": ""})
    assert response.status_code == 422 and response.json()["error"]["code"] == "invalid_request", response.text


def test_reconcile_documents_when_its_query_parameter_is_required(live, document, photos):
    """OpenAPI cannot require a query parameter for some bodies only, so the document says it in words. Must hold:
    ?expected_quantity's description says one photo needs it and a batch's instances may give their own; the 422's
    says one photo without it is refused; and the server does just that."""
    op = document["paths"]["/v1/reconcile"]["post"]
    (parameter,) = [p for p in op["parameters"] if p["name"] == "expected_quantity"]
    assert "Required with one photo" in parameter["description"] and "`instances` batch" in parameter["description"]
    assert "one photo sent without ?expected_quantity" in op["responses"]["422"]["description"]
    alone = httpx.post(f"{live.url}/v1/reconcile", content=photos["00585"], headers={"content-type": "image/jpeg"})
    assert alone.status_code == 422 and "expected_quantity" in alone.json()["error"]["message"]
    photo = base64.b64encode(photos["00585"]).decode()
    batch = httpx.post(f"{live.url}/v1/reconcile", json={"instances": [{"image_base64": photo, "expected_quantity": 2}]}, timeout=30)
    assert batch.status_code == 200 and batch.json()["predictions"][0]["decision"] in {"accept", "review", "mismatch"}
