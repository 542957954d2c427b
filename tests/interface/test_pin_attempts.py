"""PIN guessing (issue #12.6): failures are counted per (tracking number, client), per client and per
number, so a guesser locks out only themself while one PIN stays infeasible to brute-force — on both
backends, with the injected clock."""
from datetime import timedelta

from minqing import access
from minqing.clock import ManualClock
from minqing.db import write_transaction
from minqing.service_kit import create_tables

NO = "LJ-20260105-0001"


def attempt(engine, clock, client, ok=False, number=NO):
    with write_transaction(engine) as conn:
        error = access.pin_attempt(conn, number, client, ok, clock)
    return 200 if error is None else error.status


def test_a_guesser_locks_out_only_themself(engine):
    create_tables(engine)
    clock = ManualClock()
    assert [attempt(engine, clock, "198.51.100.7") for _ in range(7)] == [404] * 5 + [429] * 2
    assert attempt(engine, clock, "198.51.100.7", ok=True) == 429        # even the right PIN, from them
    assert attempt(engine, clock, "203.0.113.9", ok=True) == 200         # the resident is served
    clock.advance(access.PIN_LOCKOUT + timedelta(seconds=1))
    assert attempt(engine, clock, "198.51.100.7", ok=True) == 200        # the lock lapses


def test_a_client_guessing_many_numbers_is_refused_tracking(engine):
    create_tables(engine)
    clock = ManualClock()
    codes = [attempt(engine, clock, "198.51.100.7", number=f"LJ-20260105-{i:04d}")
             for i in range(access.PIN_CLIENT_MAX_FAILURES + 2)]
    assert codes == [404] * access.PIN_CLIENT_MAX_FAILURES + [429] * 2
    assert attempt(engine, clock, "198.51.100.7", ok=True, number="LJ-20260105-0999") == 429
    assert attempt(engine, clock, "203.0.113.9", ok=True, number="LJ-20260105-0003") == 200
    clock.advance(access.PIN_CLIENT_WINDOW + timedelta(seconds=1))
    assert attempt(engine, clock, "198.51.100.7", ok=True, number="LJ-20260105-0999") == 200


def test_right_pins_do_not_count_against_a_client(engine):
    create_tables(engine)
    clock = ManualClock()
    for i in range(3 * access.PIN_CLIENT_MAX_FAILURES):
        assert attempt(engine, clock, "198.51.100.7", ok=True) == 200


def test_guessing_one_pin_from_many_addresses_is_slowed_not_locked(engine):
    create_tables(engine)
    clock = ManualClock()
    free = [attempt(engine, clock, f"10.0.{i}.1") for i in range(access.PIN_NUMBER_FREE_FAILURES)]
    assert free == [404] * access.PIN_NUMBER_FREE_FAILURES
    # past the free failures: one attempt per slot, from anyone; the others wait (429, not compared)
    assert attempt(engine, clock, "10.1.0.1") == 404
    assert attempt(engine, clock, "10.1.0.2") == 429
    assert attempt(engine, clock, "203.0.113.9", ok=True) == 429            # the resident is slowed …
    clock.advance(access.PIN_NUMBER_SLOWDOWN)
    assert attempt(engine, clock, "203.0.113.9", ok=True) == 200            # … never locked out
    # at one guess a slot, a million PINs take months
    assert access.PIN_NUMBER_SLOWDOWN * 500_000 > timedelta(days=300)
    clock.advance(access.PIN_NUMBER_WINDOW + timedelta(seconds=1))
    assert [attempt(engine, clock, f"10.2.{i}.1") for i in range(3)] == [404] * 3   # the window lapses
