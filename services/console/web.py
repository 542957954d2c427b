"""The console's web plumbing: rendering with the message catalogue, the security headers every
answer carries, the session and language of a request, CSRF checks and time shown in the county's zone."""
from __future__ import annotations

import secrets
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

from jinja2 import Environment, FileSystemLoader, select_autoescape
from werkzeug.wrappers import Request, Response

from minqing.clock import parse_instant
from services.console import messages

HERE = Path(__file__).resolve().parent
SESSION_COOKIE = "mq_console"
FORM_COOKIE = "mq_form"        # double-submit CSRF token of the forms shown before login
LANG_COOKIE = "mq_lang"
# Catalogue does not publish a county's zone yet; every county configured today keeps Asia/Shanghai.
ZONE = ZoneInfo("Asia/Shanghai")

SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self'; "
                               "form-action 'self'; base-uri 'none'; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
}

env = Environment(loader=FileSystemLoader(HERE / "templates"), autoescape=select_autoescape(["html"]),
                  trim_blocks=True, lstrip_blocks=True)


def local_time(value: str | None) -> str:
    """An instant as the county reads it: 2026-01-05 17:00 (Beijing time)."""
    if not value:
        return "—"
    return parse_instant(value).astimezone(ZONE).strftime("%Y-%m-%d %H:%M")


def local_seconds(value: str | None) -> str:
    """To the second: the auditor's timeline, where reads and steps of one minute must be told apart."""
    return "—" if not value else parse_instant(value).astimezone(ZONE).strftime("%Y-%m-%d %H:%M:%S")


env.filters["local"] = local_time
env.filters["local_seconds"] = local_seconds


def language(request: Request) -> str:
    wanted = request.args.get("lang") or request.cookies.get(LANG_COOKIE)
    return wanted if wanted in messages.LANGS else "zh"


def render(request: Request, template: str, status: int = 200, **context) -> Response:
    lang = context.pop("lang", None) or language(request)
    context.setdefault("errors", {})
    html = env.get_template(template).render(
        t=lambda key, **values: messages.text(lang, key, **values), lang=lang, path=request.path, **context)
    response = Response(html, status=status, mimetype="text/html")
    if request.args.get("lang") in messages.LANGS:
        response.set_cookie(LANG_COOKIE, lang, max_age=365 * 86400, samesite="Strict", httponly=True)
    return response


def secure(response: Response, request: Request) -> Response:
    """Headers every console answer carries; pages are never cached (they show personal work)."""
    for name, value in SECURITY_HEADERS.items():
        response.headers[name] = value
    if response.mimetype == "text/html":
        response.headers["Cache-Control"] = "no-store"
    return response


def https(request: Request) -> bool:
    return request.scheme == "https" or request.headers.get("X-Forwarded-Proto") == "https"


def set_session_cookie(response: Response, request: Request, value: str | None) -> None:
    if value is None:
        response.delete_cookie(SESSION_COOKIE, path="/", samesite="Strict", httponly=True)
    else:
        response.set_cookie(SESSION_COOKIE, value, path="/", httponly=True, samesite="Strict", secure=https(request))


def form_token(request: Request) -> str:
    """The pre-login CSRF token (double submit): the cookie's, or a fresh one the answer will set."""
    return request.cookies.get(FORM_COOKIE) or request.environ.setdefault("minqing.form_token", secrets.token_urlsafe(24))


def keep_form_token(response: Response, request: Request) -> None:
    fresh = request.environ.get("minqing.form_token")
    if fresh and not request.cookies.get(FORM_COOKIE):
        response.set_cookie(FORM_COOKIE, fresh, path="/", httponly=True, samesite="Strict", secure=https(request))


def time_left(due: str | None, now: datetime, lang: str) -> tuple[str, bool]:
    """(words, overdue) for a deadline, in whole days and hours (minutes when under an hour)."""
    if not due:
        return messages.text(lang, "time.none"), False
    seconds = int((parse_instant(due) - now).total_seconds())
    over = seconds < 0
    hours = abs(seconds) // 3600
    if hours == 0:              # under an hour: "0 天 0 小时" would say nothing
        return messages.text(lang, "time.over_min" if over else "time.left_min", m=abs(seconds) // 60), over
    return messages.text(lang, "time.over" if over else "time.left", d=hours // 24, h=hours % 24), over
