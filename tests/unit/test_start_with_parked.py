"""`minqing run` starts when parked events are the only reason /health is not ok (they wait for an
operator's `minqing consumer retry`, across restarts), and refuses anything else."""
from minqing.shell.runner import parked_only


def _health(*services, relay="ok"):
    return {"status": "degraded", "relay": {"status": relay},
            "services": {s["service"]: s for s in services}}


OK = {"service": "intake", "status": "ok", "checks": {"ledger": {"status": "ok"}}}
PARKED = {"service": "routing", "status": "degraded", "checks": {
    "ledger": {"status": "ok"}, "broker": {"status": "ok"},
    "projection": {"status": "degraded", "name": "routing.assignments", "parked": 1, "held": 2}}}


def test_parked_events_alone_let_the_stack_start():
    assert parked_only(_health(OK, PARKED)) == ["routing.assignments"]


def test_anything_else_does_not():
    broker_down = {**PARKED, "checks": {**PARKED["checks"], "broker": {"status": "down"}}}
    lagging = {**PARKED, "checks": {**PARKED["checks"], "projection": {"status": "degraded", "retrying": 61}}}
    down = {"service": "notify", "status": "down", "error": "ConnectionRefusedError"}
    assert parked_only(_health(OK, broker_down)) == []
    assert parked_only(_health(OK, lagging)) == []
    assert parked_only(_health(OK, PARKED, down)) == []
    assert parked_only(_health(OK, PARKED, relay="down")) == []
    assert parked_only(None) == []
