"""Shared fixtures. Interface, end-to-end and fault tests run on a real RabbitMQ node and a real
PostgreSQL server that the session starts privately (loopback, free ports, data under a temp dir)."""
from __future__ import annotations

import itertools
import uuid

import pytest

from minqing.shell import devstack
from minqing.db import make_engine
from minqing.ledger import Ledger, Metadata, NewEvent
from minqing.service_kit import create_tables

_db_counter = itertools.count(1)


@pytest.fixture(scope="session")
def postgres(tmp_path_factory):
    server = devstack.PostgreSQL(tmp_path_factory.mktemp("pg"), durable=False).start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def rabbit(tmp_path_factory):
    node = devstack.RabbitMQ(tmp_path_factory.mktemp("mq")).start()
    yield node
    node.stop()


@pytest.fixture
def pg_url(postgres):
    """A fresh, empty PostgreSQL database for one test."""
    return postgres.create_database(f"t{next(_db_counter)}_{uuid.uuid4().hex[:8]}")


@pytest.fixture
def sqlite_url(tmp_path):
    return f"sqlite:///{tmp_path / 'ledger.db'}"


@pytest.fixture(params=["sqlite", "postgres"])
def backend_url(request, tmp_path):
    """Each test using this runs once on SQLite and once on PostgreSQL (the ledger contract)."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'ledger.db'}"
    return request.getfixturevalue("pg_url")


@pytest.fixture
def engine(backend_url):
    eng = make_engine(backend_url)
    create_tables(eng)
    yield eng
    eng.dispose()


@pytest.fixture
def ledger(engine):
    return Ledger(engine)


META = Metadata(actor="test:suite", county="longjiang")


def note(case_id: str = "c1", text: str = "已联系村民") -> NewEvent:
    return NewEvent("case.progress_noted", {"case_id": case_id, "cadre": "lj-c001", "note": text}, META)


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config, items):
    """Units of work for `pytest -n 2 --dist loadgroup` (make test): a module never splits across
    workers (its module-scoped stack starts once), and every module that uses a session-wide stack
    runs on one worker, so that stack starts once and tests/e2e/test_zz_personal_data.py, which
    searches that stack's ledger, broker and logs, runs after the tests that fed it.

    xdist 3.8 writes a test's group into `item._nodeid`, which pytest 9 no longer reads (node ids live
    in `item._id`), so the group is written here, as the `@group` suffix xdist's loadgroup splits on.
    Schemathesis gives all its generated tests one node id (they differ in name only); xdist tells
    tests apart by node id, so each gets its own here too."""
    from _pytest.nodeid import coerce_node_id
    if not hasattr(config, "workerinput"):     # only xdist workers collect for the scheduler
        return
    by_module: dict[str, list] = {}
    for item in items:
        by_module.setdefault(item.nodeid.split("::")[0], []).append(item)
    for module, module_items in by_module.items():
        used = set().union(*(item.fixturenames for item in module_items))
        group = ("pg-stack" if "stack" in used else "sqlite-stack" if "sqlite_stack" in used
                 else "demo-stack" if "demo_stack" in used else module)
        for item in module_items:
            base = f"{item.nodeid.rsplit('::', 1)[0]}::{item.name}" if "::" in item.nodeid else item.nodeid
            item._id = coerce_node_id(f"{base}@{group}")
