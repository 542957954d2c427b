"""The gateway's own answers (issue #12.10, #12.6): Open311 XML clients get XML errors; a service
trusts a forwarded address only with the gateway's proof; the stack's ports are kept for the stack."""
import dataclasses
import socket

from werkzeug.test import Client

from minqing import config, ports
from minqing.shell import devstack
from minqing.access import GATEWAY_HEADER, client_key
from minqing.shell.gateway import Gateway


def _closed_block() -> int:
    while True:
        base = devstack.free_port()
        if not any(ports.listening(base + i) for i in range(5)):
            return base


def test_a_service_that_does_not_answer_gets_xml_for_xml_paths():
    settings = dataclasses.replace(config.load(), http_port=_closed_block())
    client = Client(Gateway(settings, ledger=None))
    xml = client.get("/open311/v2/services.xml")
    assert xml.status_code == 503
    assert xml.headers["Content-Type"].startswith("text/xml")
    assert b"<errors><error><code>503</code><description>the intake service is not answering" in xml.data
    json_answer = client.get("/open311/v2/services.json")
    assert json_answer.status_code == 503 and json_answer.json["error"]["code"] == "service_unavailable"


def test_a_method_not_allowed_on_an_xml_path_is_answered_in_xml():
    client = Client(Gateway(config.load(), ledger=None))
    answer = client.put("/open311/v2/requests.xml")
    assert answer.status_code == 405 and answer.headers["Allow"]
    assert answer.data.startswith(b'<?xml version="1.0" encoding="utf-8"?>\n<errors><error><code>405</code>')


class _Request:
    def __init__(self, peer, headers):
        self.remote_addr, self.headers = peer, headers


def test_forwarded_addresses_need_the_gateways_proof():
    forwarded = {"X-Forwarded-For": "203.0.113.9"}
    assert client_key(_Request("127.0.0.1", forwarded), "s3cret") == "127.0.0.1"
    assert client_key(_Request("127.0.0.1", forwarded), None) == "127.0.0.1"
    assert client_key(_Request("127.0.0.1", {**forwarded, GATEWAY_HEADER: "guess"}), "s3cret") == "127.0.0.1"
    assert client_key(_Request("127.0.0.1", {**forwarded, GATEWAY_HEADER: "s3cret"}), "s3cret") == "203.0.113.9"
    assert client_key(_Request("127.0.0.1", {**forwarded, GATEWAY_HEADER: "x"}), None) == "127.0.0.1"


def test_a_reserved_port_is_never_an_outgoing_connections_local_port_but_a_server_may_listen_on_it():
    port = devstack.free_port()
    held, busy = ports.reserve([port], timeout=1)
    try:
        assert busy == []
        server = socket.socket()
        server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        server.bind(("127.0.0.1", port))
        server.listen()
        assert ports.listening(port)
        server.close()
    finally:
        for sock in held:
            sock.close()


def test_a_port_held_by_a_connection_is_reported_busy_after_the_wait():
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    client = socket.create_connection(listener.getsockname())
    taken = client.getsockname()[1]
    try:
        held, busy = ports.reserve([taken], timeout=0.5)
        assert busy == [taken] and held == []
    finally:
        client.close()
        listener.close()
