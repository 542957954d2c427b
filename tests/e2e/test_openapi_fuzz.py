"""Generated requests against the real stack (issue #4 §7): schemathesis draws requests from the
OpenAPI document — valid ones and, on purpose, broken ones — and holds every answer to it: never a
5xx, never a status, media type or body the document does not promise.

Each operation is called with a token of a role its access rule admits, so the handlers behind the
role check are exercised, not only the 401/403 answers. Thousands of requests in all (the last test
counts them).
"""
from __future__ import annotations

import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import (content_type_conformance, not_a_server_error, response_schema_conformance,
                                 status_code_conformance)

from minqing.endpoints import openapi_document
from minqing.shell.registry import SERVICES, service_class

EXAMPLES = 110
SCHEMA = schemathesis.openapi.from_dict(openapi_document(service_class(n) for n in SERVICES))
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]
CALLS: dict[str, int] = {}
TOKENS: dict[str, str] = {}

PRINCIPAL_FOR_ROLE = {       # (role, unit, cadre) in the demo county
    "operator": ("operator", None, None),
    "cadre": ("cadre", "heigang.kaoshan-station", "lj-c002"),
    "supervisor": ("supervisor", "heigang-centre", None),
    "auditor": ("auditor", None, None),
    "integrator": ("integrator", None, None),
    "admin": ("admin", None, None),
}


def _token(stack, roles: list[str]) -> str | None:
    if not roles:
        return None
    role = roles[0]
    if role not in TOKENS:
        kind, unit, cadre = PRINCIPAL_FOR_ROLE[role]
        TOKENS[role] = stack.issue(kind, "longjiang", unit, cadre)
    return TOKENS[role]


KNOWN: dict[str, str] = {}


def _known(stack) -> dict[str, str]:
    """A real case, so half the generated calls reach a handler with an existing case, county and
    tracking number instead of stopping at 404."""
    if not KNOWN:
        from tests.e2e.test_case_flow import _wait_case, report
        code, case = stack.request("POST", "/api/v1/cases", report(summary="生成请求测试用的诉求"))
        assert code == 201
        _wait_case(stack, case["case_id"], "assigned")
        KNOWN.update(case_id=case["case_id"], tracking_no=case["tracking_no"], county="longjiang", cadre="lj-c002")
    return KNOWN


@SCHEMA.parametrize()
@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck), database=None)
def test_generated_requests_get_documented_answers_and_never_a_5xx(case, stack):
    if sum(CALLS.values()) % 2 == 0 and case.path_parameters:
        known = _known(stack)
        case.path_parameters = {k: known.get(k, v) for k, v in case.path_parameters.items()}
    roles = case.operation.definition.raw.get("x-minqing-roles", [])
    token = _token(stack, roles)
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    case.call_and_validate(base_url=stack.base, headers=headers, checks=CHECKS)
    CALLS[case.operation.label] = CALLS.get(case.operation.label, 0) + 1


def test_thousands_of_requests_were_made():
    assert sum(CALLS.values()) >= 2000, CALLS
    assert len(CALLS) == len(list(SCHEMA.get_all_operations()))
