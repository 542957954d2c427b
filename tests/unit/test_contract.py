"""The event contract and its public CloudEvents form (DESIGN §5)."""
import pytest

from minqing import cloudevents, contract
from minqing.ledger import Metadata, RecordedEvent


def _reported_data():
    return {"case_id": "c1", "county": "longjiang", "tracking_no": "LJ-20261122-0001", "channel": "hotline",
            "category": "202", "kind": "help", "urgency": "normal", "summary": "道路水毁",
            "location": {"township": "heigang", "village": "heigang.kaoshan", "hamlet": None},
            "reporter": {"subject": "s-1", "name_masked": "张*", "phone_masked": "138****5678"},
            "reported_at": "2026-11-22T01:00:00.000000Z"}


def test_every_catalogue_type_has_a_schema_and_version():
    for name in ("case.reported", "case.assigned", "case.escalated", "case.resolved", "case.followed_up",
                 "notification.sent", "visit.logged", "policy.published", "assessment.published"):
        etype = contract.event_type(name)
        assert etype.version >= 1 and etype.cloudevents_type == f"cn.minqing.{name}"


def test_validation_names_every_bad_field():
    data = _reported_data()
    data.update(channel="fax", reported_at="yesterday")
    del data["summary"]
    with pytest.raises(contract.ContractViolation) as info:
        contract.validate_event("case.reported", data)
    assert set(info.value.errors) == {"channel", "reported_at", "summary"}


def test_unknown_types_and_old_versions_cannot_be_appended():
    with pytest.raises(contract.ContractViolation):
        contract.validate_event("case.vanished", {})
    with pytest.raises(contract.ContractViolation):
        contract.validate_event("case.reported", _reported_data(), schema_version=0)


def test_cloudevent_envelope_hides_the_resident_reference():
    event = RecordedEvent(position=42, event_id="e-1", stream="case-c1", version=1, type="case.reported",
                          schema_version=1, data=_reported_data(), metadata=Metadata("operator:1", "longjiang"),
                          recorded_at="2026-11-22T01:00:01.000000Z", hash="0" * 64)
    ce = cloudevents.to_cloudevent(event)
    assert ce["specversion"] == "1.0" and ce["id"] == "e-1" and ce["subject"] == "c1"
    assert ce["type"] == "cn.minqing.case.reported" and ce["sequence"] == "00000000000000000042"
    assert ce["county"] == "longjiang" and ce["time"] == event.recorded_at
    assert ce["dataschema"] == "urn:minqing:schema:case.reported:1" and ce["ledgerhash"] == "0" * 64
    assert "subject" not in ce["data"]["reporter"] and event.data["reporter"]["subject"] == "s-1"
    assert cloudevents.routing_key(event) == "longjiang.case.reported"
    assert cloudevents.parse(ce) == (42, "case.reported")


@pytest.mark.parametrize("body", [b"{not json", b"[]", {"specversion": "1.0"},
                                  {**{k: "x" for k in cloudevents.REQUIRED}, "specversion": "1.0", "sequence": 7}])
def test_malformed_messages_are_recognised(body):
    with pytest.raises(cloudevents.MalformedMessage):
        cloudevents.parse(body)


def test_the_contract_refuses_what_the_door_refuses():
    """Issue #12: a NUL or a lone surrogate that reached an append (from any caller: CLI, a service
    path that skipped the door) would stop PostgreSQL or the chain hash; the contract refuses it."""
    import pytest
    from minqing.contract import ContractViolation, validate_event
    for bad in ("a\x00b", "a\ud800b", "\x1b[2J"):
        with pytest.raises(ContractViolation) as caught:
            validate_event("case.progress_noted", {"case_id": "c1", "cadre": "lj-c002", "unit": "u", "note": bad})
        assert "note" in caught.value.errors, caught.value.errors
