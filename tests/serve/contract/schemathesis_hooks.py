"""schemathesis hooks for the contract test (loaded by `st run` through SCHEMATHESIS_HOOKS)."""

from __future__ import annotations

import schemathesis


def states_quantity(body: object) -> bool:
    """Whether a /v1/reconcile JSON body carries recorded quantities itself (its own field, or a batch's instances)."""
    return isinstance(body, dict) and ("expected_quantity" in body or "instances" in body)


@schemathesis.hook
def map_case(context, case):
    """One photo to /v1/reconcile needs ?expected_quantity= (a batch's instances may give their own): a rule across
    the query and the body that OpenAPI cannot state (the document says it in words: the parameter's description and
    the 422's). The answer without one (422) is tested in test_reconcile_route.py and test_openapi.py."""
    query = case.query or {}
    if case.path == "/v1/reconcile" and "expected_quantity" not in query and not states_quantity(case.body):
        case.query = {**query, "expected_quantity": 3}
    return case
