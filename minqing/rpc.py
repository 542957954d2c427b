"""RPC entrypoints that go through the one access decision, as HTTP endpoints do (minqing.endpoints).

An RPC caller (another service, an integration) presents a bearer token, the same kind `minqing token
issue` gives an HTTP client; `guarded_rpc` authenticates it against the token table and applies the
role rule of the entrypoint's action (minqing.access.POLICY) before the handler runs, and the handler
receives the authenticated `Principal` to make the object-level checks (this case, this unit). A
principal is never taken from the caller's word: the broker is reachable by every process of the
stack, so an RPC that trusted a role and unit given in its arguments would let any of them act as
anyone.

Refusals and bad input come back as the HTTP answer would be, with its status as `code`
(`{"code": 401, "error": {...}}`), so callers see 401/403/404/409/422 exactly as a person would.
"""
from __future__ import annotations

import functools
from typing import Callable

from nameko.rpc import rpc

from minqing import access
from minqing.db import read_transaction
from minqing.http import ApiError


def refusal(exc: ApiError) -> dict:
    return {"code": exc.status, "error": {"code": exc.code, "message": exc.message, "fields": exc.fields}}


def guarded_rpc(action: str | Callable[..., str]) -> Callable:
    """Declare an RPC entrypoint `handler(self, principal, *args)`, called as `service.name(token, *args)`.
    `action` is a key of access.POLICY, or a function of the call's arguments giving one (raising
    ApiError 422 for arguments that name no action)."""
    def decorate(fn: Callable) -> Callable:
        @functools.wraps(fn)
        def entrypoint(self, token: str, *args, **kwargs):
            try:
                with read_transaction(self.ledger.engine) as conn:
                    principal = access.authenticate(conn, f"Bearer {token}" if isinstance(token, str) else None)
                access.authorize(principal, action(*args, **kwargs) if callable(action) else action)
                return fn(self, principal, *args, **kwargs)
            except ApiError as exc:
                return refusal(exc)
        entrypoint.minqing_rpc_action = action
        return rpc(entrypoint)
    return decorate
