"""The demo county's conveniences of `minqing run` on the embedded default: demo tokens (written to
the run dir) and console demo accounts, and the welcome text that names them."""
from __future__ import annotations

import json
import logging
import os
import secrets
from pathlib import Path

from minqing.config import Settings
from minqing.shell.files import write_atomically

log = logging.getLogger("minqing.run")


DEMO_TOKENS = [   # (role, unit, cadre) in the demo county
    ("operator", None, None),
    ("cadre", "heigang.kaoshan-station", "lj-c002"),
    ("supervisor", "heigang-centre", None),
    ("auditor", None, None),
    ("integrator", None, None),
    ("admin", None, None),
]


def demo_tokens(engine, run_dir: Path, county: str = "longjiang") -> dict[str, str]:
    """One token per role for the demo county, kept in `.run/demo-tokens.json` (mode 0600) so they
    stay the same between runs; reissued when the database no longer accepts them."""
    import os

    from minqing import access
    from minqing.db import read_transaction
    from minqing.http import ApiError
    path = run_dir / "demo-tokens.json"
    try:
        tokens = json.loads(path.read_text())
        with read_transaction(engine) as conn:
            for token in tokens.values():
                access.authenticate(conn, f"Bearer {token}")
        if set(tokens) == {role for role, _, _ in DEMO_TOKENS}:
            return tokens
    except (OSError, ValueError, ApiError):
        pass
    tokens = {}
    for role, unit, cadre in DEMO_TOKENS:
        _, tokens[role] = access.issue_token(engine, role, county, unit=unit, cadre=cadre,
                                             label="demo (minqing run)", days=30)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        json.dump(tokens, handle, indent=2)
    return tokens


DEMO_ACCOUNTS = [   # (username, role, unit, cadre) in the demo county: the console's demo logins
    ("demo-operator", "operator", None, None),
    ("demo-cadre", "cadre", "heigang.kaoshan-station", "lj-c002"),
    ("demo-supervisor", "supervisor", "heigang-centre", None),
    ("demo-auditor", "auditor", None, None),
    ("demo-admin", "admin", None, None),
]


def embedded(settings: Settings) -> bool:
    """The embedded default: a SQLite ledger inside the run dir (MINQING_DATABASE_URL unset or pointing
    there). Only then does `minqing run` make demo logins; a real deployment's accounts are made by
    its operations team (`minqing account add`)."""
    prefix = "sqlite:///"
    if not settings.database_url.startswith(prefix):
        return False
    path = Path(settings.database_url[len(prefix):]).resolve()
    return path.is_relative_to(settings.run_dir.resolve())


def demo_accounts(engine, settings: Settings, county: str = "longjiang") -> dict[str, dict]:
    """A console login per role for the demo county, with random passwords kept in
    `<run dir>/demo-accounts.json` (mode 0600), so they stay the same between runs. An account that
    is missing, disabled or no longer takes its password is made (or reset) again. Demo accounts skip
    the first-login password change: they are for trying the console, on the embedded default only."""
    from services.console import accounts, sessions
    path = settings.run_dir / "demo-accounts.json"
    try:
        kept = json.loads(path.read_text())
        if not isinstance(kept, dict):
            kept = {}
    except (OSError, ValueError):
        kept = {}
    out, changed = {}, False
    for username, role, unit, cadre in DEMO_ACCOUNTS:
        entry = kept.get(role) if isinstance(kept.get(role), dict) else {}
        password = entry.get("password") if entry.get("username") == username else None
        if not (password and accounts.usable(engine, username, password)):
            password = secrets.token_urlsafe(12)
            accounts.ensure(engine, username, password, role, county, unit=unit, cadre=cadre)
            changed = True
        out[role] = {"username": username, "password": password}
    if changed or not path.exists():
        write_atomically(path, json.dumps(out, indent=2) + "\n", mode=0o600)
    return out


def _print_welcome(settings: Settings, log_dir: Path, tokens: dict[str, str],
                   logins: dict[str, dict] | None = None) -> None:
    base = f"http://127.0.0.1:{settings.http_port}"
    example = json.dumps({
        "county": "longjiang", "channel": "hotline", "category": "202",
        "summary": "黄牛场通往11屯的道路水毁严重，车辆无法通行",
        "location": {"township": "黑岗乡", "village": "靠山村", "hamlet": "靠山村11屯"},
        "reporter": {"name": "张三", "phone": "13800138000"}}, ensure_ascii=False)
    token_lines = "\n".join(f"  {role:<11} {token}" for role, token in tokens.items())
    if logins:
        login_lines = "\n".join(f"  {role:<11} {login['username']:<16} {login['password']}"
                                for role, login in logins.items())
        console = (f"Console: {base}/console/   (residents: {base}/console/track, 民生在线 {base}/console/online/longjiang)\n"
                   f"Demo logins for 龙江县 (kept in {settings.run_dir / 'demo-accounts.json'}; cadre = lj-c002,\n"
                   f"supervisor = 黑岗乡; no password change asked):\n{login_lines}")
    else:
        console = (f"Console: {base}/console/   (residents: {base}/console/track, 民生在线 {base}/console/online/longjiang)\n"
                   f"  logins: .venv/bin/minqing account add NAME --county longjiang --role operator\n"
                   f"  (a temporary password, changed at the first login; see docs/console.md)")
    print(f"""
Minqing is running.
  health        {base}/health
  API document  {base}/api/v1/openapi.json
  county        {base}/api/v1/counties/longjiang
  report        POST {base}/api/v1/cases
  case          {base}/api/v1/cases/<case_id>
  track         {base}/api/v1/track/<tracking_no>?pin=<pin>
  scorecards    {base}/api/v1/assessment/longjiang/cadres
  broker        {settings.effective_amqp_uri()}  (exchange minqing.events)
  ledger        {settings.database_url}
  logs          {log_dir}

Demo tokens for 龙江县 (kept in {settings.run_dir / 'demo-tokens.json'}; cadre = lj-c002 of
靠山村代理代办服务站, supervisor = 黑岗乡):
{token_lines}

{console}

Try it:
  curl -s -X POST {base}/api/v1/cases -H "Authorization: Bearer {tokens['operator']}" \\
    -H 'Content-Type: application/json' -d '{example}'
  .venv/bin/minqing events tail

Ctrl-C stops everything.
""", flush=True)
