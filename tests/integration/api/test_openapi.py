"""The OpenAPI document, Swagger UI and ReDoc; schemathesis over /openapi.json finds no 500."""
from __future__ import annotations

import pytest

from tests.integration.api.conftest import ADMIN_TOKEN

# schemathesis calls the WSGI app with its own client: every case carries the bootstrap admin token, so the
# fuzzing reaches the views and the service layer instead of stopping at the 401
ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}

DOCUMENTED = {
    "/consumers/": {"get", "post"},
    "/consumers/{consumer_id}/": {"get", "patch", "delete"},
    "/consumers/{consumer_id}/start/": {"post"},
    "/consumers/{consumer_id}/stop/": {"post"},
    "/consumers/{consumer_id}/restart/": {"post"},
    "/consumers/{consumer_id}/status/": {"get"},
    "/consumers/{consumer_id}/processors/": {"get", "post"},
    "/consumers/{consumer_id}/processors/{processor_id}/": {"get", "patch", "delete"},
    "/processor-types/": {"get"},
}


def test_openapi_json_documents_every_endpoint(client):
    response = client.get("/openapi.json")
    assert response.status_code == 200
    spec = response.json
    assert spec["openapi"].startswith("3.")
    for path, methods in DOCUMENTED.items():
        assert path in spec["paths"], path
        assert methods <= set(spec["paths"][path]), path
    assert not any(path.rstrip("/") in spec["paths"] for path in DOCUMENTED)  # one form each, no clutter
    error = spec["components"]["schemas"]["Error"]
    assert set(error["properties"]) == {"code", "status", "message", "errors"}


def test_the_documented_create_example_creates_a_consumer(client):
    body = client.get("/openapi.json").json["paths"]["/consumers/"]["post"]["requestBody"]
    response = client.post("/consumers/", json=body["content"]["application/json"]["example"])
    assert response.status_code == 201, response.json


def test_openapi_document_is_valid(client):
    # schemathesis ships the OpenAPI 3.0 meta-schema; this is the validation it runs when loading a spec
    from schemathesis.specs.openapi.adapter.validators import validate_v3

    validate_v3(client.get("/openapi.json").json)


@pytest.mark.parametrize("path,marker", [("/docs", "swagger-ui"), ("/redoc", "redoc")])
def test_swagger_ui_and_redoc_are_served(client, path, marker):
    response = client.get(path)
    assert response.status_code == 200
    assert marker in response.get_data(as_text=True).lower()


def _conformance_checks():
    from schemathesis.specs.openapi import checks

    # not response_headers_conformance: flask-smorest documents X-Pagination as an object, sent as JSON text
    return [checks.status_code_conformance, checks.content_type_conformance, checks.response_schema_conformance]


CONFORMANCE_CHECKS = _conformance_checks()


def _no_server_error(app, operations_filter, mode, max_examples, path_parameters=None):
    import schemathesis
    from hypothesis import HealthCheck, given, settings
    from hypothesis.errors import Unsatisfiable

    schema = schemathesis.openapi.from_wsgi("/openapi.json", app)
    failures = []
    statuses = []
    for result in schema.get_all_operations():
        operation = result.ok()
        if not operations_filter(operation):
            continue
        fixed = {k: v for k, v in (path_parameters or {}).items() if f"{{{k}}}" in operation.path}

        @settings(max_examples=max_examples, deadline=None, database=None, derandomize=True,
                  suppress_health_check=list(HealthCheck))
        @given(case=operation.as_strategy(generation_mode=mode, path_parameters=fixed or None))
        def run(case):
            response = case.call(headers=ADMIN)
            statuses.append(response.status_code)
            if response.status_code >= 500:
                failures.append(f"{case.method} {case.formatted_path} -> {response.status_code}: "
                                f"{response.text[:300]}")
            elif "dead-letters" not in case.operation.path:  # ours: the response also matches the document
                try:
                    case.validate_response(response, checks=CONFORMANCE_CHECKS)
                except Exception as exc:  # schemathesis raises a group of failures
                    failures.append(f"{case.method} {case.formatted_path}: {str(exc)[:500]}")

        try:
            run()
        except Unsatisfiable:  # no invalid input exists (e.g. a GET without parameters in negative mode)
            continue
    # negative mode also sends malformed credentials on purpose: a third getting past authentication is plenty
    assert statuses and sum(status != 401 for status in statuses) > len(statuses) // 4, \
        "fuzzed calls must get past authentication"
    return failures


@pytest.mark.timeout(120)
def test_schemathesis_finds_no_server_error_and_responses_match_the_document(app, create_consumer):
    from schemathesis import GenerationMode

    consumer = create_consumer(downstream_processors=[
        {"processor_type": "test_collector", "config": {"path": "/tmp/kcm-fuzz"}}])
    known = {"consumer_id": consumer["id"], "processor_id": consumer["downstream_processors"][0]["id"]}
    failures = []
    for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
        # random ids (mostly 404) and the ids of a real consumer and processor (reach the service layer)
        failures += _no_server_error(app, lambda op: True, mode, 25)
        failures += _no_server_error(app, lambda op: "{consumer_id}" in op.path, mode, 25, known)
    assert failures == []
