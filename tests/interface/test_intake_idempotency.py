"""services/intake/idempotency.py on both backends: one registration per key, the first answer kept
sealed and replayed, a different request refused by name, concurrent requests with one key make one
case, the key lapses after a day (the injected clock)."""
import threading
import time

import pytest
from cryptography.fernet import Fernet
from sqlalchemy import select

from minqing.clock import ManualClock
from minqing.http import ApiError
from minqing.service_kit import create_tables
from minqing.vault import Vault
from services.intake import idempotency
from services.intake.tables import idempotency_keys_table, metadata_obj


@pytest.fixture
def vault():
    return Vault(Fernet.generate_key())


def registrar(calls, pause=0.0):
    def register(conn):
        calls.append(1)
        if pause:
            time.sleep(pause)
        return idempotency.Answer(201, {"case_id": f"c{len(calls)}", "pin": "123456"})
    return register


def test_a_retry_gets_the_first_answer_and_no_second_registration(engine, vault):
    create_tables(engine, metadata_obj)
    clock, calls = ManualClock(), []
    first = idempotency.once(engine, vault, clock, "longjiang|operator:a", "k1", "fp", registrar(calls))
    again = idempotency.once(engine, vault, clock, "longjiang|operator:a", "k1", "fp", registrar(calls))
    assert (first.status, first.body, first.replayed) == (201, {"case_id": "c1", "pin": "123456"}, False)
    assert (again.status, again.body, again.replayed) == (201, first.body, True)
    assert len(calls) == 1
    with engine.connect() as conn:
        stored = conn.execute(select(idempotency_keys_table.c.answer)).scalar_one()
    assert b"123456" not in stored                      # the PIN is kept sealed
    # another principal's key of the same name is another key
    other = idempotency.once(engine, vault, clock, "longjiang|operator:b", "k1", "fp", registrar(calls))
    assert other.body["case_id"] == "c2" and not other.replayed


def test_the_same_key_for_another_request_is_refused_by_name(engine, vault):
    create_tables(engine, metadata_obj)
    clock, calls = ManualClock(), []
    idempotency.once(engine, vault, clock, "s", "k1", idempotency.fingerprint({"a": 1, "b": 2}), registrar(calls))
    assert idempotency.once(engine, vault, clock, "s", "k1", idempotency.fingerprint({"b": 2, "a": 1}),
                            registrar(calls)).replayed
    with pytest.raises(ApiError) as refused:
        idempotency.once(engine, vault, clock, "s", "k1", idempotency.fingerprint({"a": 2}), registrar(calls))
    assert refused.value.status == 422 and list(refused.value.fields) == ["Idempotency-Key"]
    assert len(calls) == 1


def test_a_refused_registration_keeps_no_key(engine, vault):
    create_tables(engine, metadata_obj)
    clock, calls = ManualClock(), []

    def refuse(conn):
        raise ApiError(422, "invalid_fields", "bad", {"category": ["unknown"]})
    with pytest.raises(ApiError):
        idempotency.once(engine, vault, clock, "s", "k1", "fp1", refuse)
    assert idempotency.once(engine, vault, clock, "s", "k1", "fp2", registrar(calls)).body["case_id"] == "c1"


def test_a_key_lapses_after_a_day(engine, vault):
    create_tables(engine, metadata_obj)
    clock, calls = ManualClock(), []
    idempotency.once(engine, vault, clock, "s", "k1", "fp", registrar(calls))
    clock.advance(idempotency.KEEP)
    assert not idempotency.once(engine, vault, clock, "s", "k1", "fp2", registrar(calls)).replayed
    assert len(calls) == 2


def test_concurrent_requests_with_one_key_make_one_registration(engine, vault):
    create_tables(engine, metadata_obj)
    clock, calls, answers = ManualClock(), [], []

    def send():
        answers.append(idempotency.once(engine, vault, clock, "s", "k1", "fp", registrar(calls, pause=0.3)))
    threads = [threading.Thread(target=send) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert len(calls) == 1
    assert sorted(a.replayed for a in answers) == [False, True, True]
    assert {a.body["case_id"] for a in answers} == {"c1"}


@pytest.mark.parametrize("key", ["", "a b", "x" * 256, "ключ"])
def test_an_unusable_key_is_refused_by_name(key):
    with pytest.raises(ApiError) as refused:
        idempotency.key_of({"Idempotency-Key": key})
    assert refused.value.status == 422 and "Idempotency-Key" in refused.value.fields
