"""Property-based tests of the HTTP surface, bounded for CI (the large run is bench/serving/fuzz.py).

1. hypothesis mutates valid OpenAI and KAITO bodies (tests/support/http_fuzz.py): no 5xx, every
   error in the OpenAI envelope, and /healthz still 200 afterwards. Each route runs under a fixed
   seed and a random one; the seed is in the test id, so a failure says how to reproduce it.
2. schemathesis generates valid and invalid requests from the app's own OpenAPI schema: no 5xx,
   every 4xx in the envelope, and bodies that break the schema are refused.
"""
import os
import random

import pytest
import schemathesis
from hypothesis import HealthCheck, given, seed, settings
from hypothesis import strategies as st
from schemathesis.checks import negative_data_rejection, not_a_server_error

from serving.api import create_app
from tests.support import http_fuzz

EXAMPLES = int(os.environ.get("KAITO_FUZZ_EXAMPLES", "35"))  # per route and seed
SCHEMA_EXAMPLES = int(os.environ.get("KAITO_SCHEMA_EXAMPLES", "20"))  # per operation
RANDOM_SEED = random.randrange(2 ** 32)
JSON = {"Content-Type": "application/json"}


@pytest.mark.parametrize("seed_value", [20261201, RANDOM_SEED], ids=lambda s: f"seed={s}")
@pytest.mark.parametrize("route", http_fuzz.ROUTES)
def test_mutated_bodies_never_get_a_5xx_and_errors_use_the_envelope(small_client, route, seed_value):
    bases = http_fuzz.valid_bodies("small")[route]

    @seed(seed_value)
    @settings(max_examples=EXAMPLES, deadline=None, database=None,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
    @given(st.sampled_from(bases).flatmap(http_fuzz.mutated))
    def check(body):
        resp = small_client.post(route, content=http_fuzz.encode(body), headers=JSON)
        stream = isinstance(body, dict) and body.get("stream") is True
        http_fuzz.check_answer(resp.status_code, dict(resp.headers), resp.content, stream=stream)

    check()
    assert small_client.get("/healthz").status_code == 200
    for base in bases:  # and the server still answers valid requests
        assert small_client.post(route, json=base).status_code == 200


# The schema is loaded at import (schemathesis' lazy fixture loader does not run under pytest 9), so the
# app resolves its Service per request: the fixture below installs it before the test runs.
_served: dict = {}


def _service():
    from serving.errors import NotReady

    if "svc" not in _served:
        raise NotReady("the test has not installed its service")
    return _served["svc"]


schema = schemathesis.openapi.from_asgi("/openapi.json", create_app(_service))
schema.config.generation.update(modes=[schemathesis.GenerationMode.POSITIVE, schemathesis.GenerationMode.NEGATIVE],
                                max_examples=SCHEMA_EXAMPLES, deterministic=True, database="none")



@schema.hook
def map_body(context, body):
    # a generated model name is almost never the served one: name it, so bodies reach the engine
    if isinstance(body, dict) and isinstance(body.get("model"), str):
        body["model"] = "small"
    return body


@pytest.fixture
def installed(small_service):
    _served["svc"] = small_service
    yield
    _served.clear()


@schemathesis.check
def error_envelope(ctx, response, case):
    """Every 4xx/5xx is OpenAI's {"error": {message, type, param, code}}, code a string or null."""
    if response.status_code >= 400:
        err = response.json()["error"]
        assert set(err) >= {"message", "type", "param", "code"}, err
        assert err["code"] is None or (isinstance(err["code"], str) and not err["code"].isdigit()), err
    return None


@schema.parametrize()
@settings(deadline=None, suppress_health_check=list(HealthCheck))
def test_the_openapi_schema_holds_no_5xx_and_envelope_errors(case, installed):
    response = case.call()
    case.validate_response(response, checks=[not_a_server_error, error_envelope, negative_data_rejection])
