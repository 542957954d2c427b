"""Notify's channel settings, from environment variables in one place (README, "Configuration").

Without MINQING_SMS_URL or MINQING_SMTP_HOST those channels are not configured and what would go
through them is written to the log channel instead (the embedded default), recorded as sent by `log`.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from urllib.parse import urlsplit

from minqing.config import ConfigError, Reader

DEFAULT_SMS_BODY = '{"to": "{to}", "text": "{text}", "id": "{key}"}'


@dataclass(frozen=True)
class SmsSettings:
    url: str
    body_template: str          # JSON with {to}, {text} and {key} placeholders, filled JSON-escaped
    authorization: str | None   # sent as the Authorization header
    timeout: float


@dataclass(frozen=True)
class SmtpSettings:
    host: str
    port: int
    sender: str
    user: str | None
    password: str | None
    starttls: bool
    timeout: float


@dataclass(frozen=True)
class NotifySettings:
    sms: SmsSettings | None
    smtp: SmtpSettings | None
    max_attempts: int           # tries of one notification before notification.failed
    backoff_seconds: float      # the first retry waits this long, each further one twice as long
    interval: float             # how often the sender looks for due work
    webhook_timeout: float
    lease_seconds: float        # how long a claimed or sending row is this sender's before it counts as abandoned


SECRETS = ("MINQING_SMS_URL", "MINQING_SMS_AUTHORIZATION", "MINQING_SMTP_PASSWORD", "MINQING_RATING_LINK_SECRET")   # each also as NAME_FILE
_BOOLEANS = {"1": True, "true": True, "yes": True, "on": True, "0": False, "false": False, "no": False, "off": False}


def load(environ=None) -> NotifySettings:
    """Every notify setting, checked together: ConfigError names every bad variable in one message.
    The secrets (SECRETS) may instead name a file with the `_FILE` suffix, as the kernel's do
    (minqing.config): systemd credentials, Docker and Kubernetes secrets."""
    r = Reader(environ)
    sms = None
    sms_url = r.secret("MINQING_SMS_URL")
    if sms_url:
        template = r.text("MINQING_SMS_BODY") or DEFAULT_SMS_BODY
        try:
            json.loads(template.replace("{to}", "x").replace("{text}", "x").replace("{key}", "x"))
        except ValueError:
            r.problems.append("MINQING_SMS_BODY must be JSON once {to}, {text} and {key} are filled")
        if urlsplit(sms_url).scheme not in ("http", "https"):
            r.problems.append("MINQING_SMS_URL must be an http:// or https:// URL")
        sms = SmsSettings(url=sms_url, body_template=template,
                          authorization=r.secret("MINQING_SMS_AUTHORIZATION"),
                          timeout=r.number("MINQING_SMS_TIMEOUT", 10, 0.5, 120))
    smtp = None
    smtp_host = r.text("MINQING_SMTP_HOST")
    if smtp_host:
        sender = r.text("MINQING_SMTP_FROM") or "minqing@localhost"
        if "@" not in sender or any(c in sender for c in " \r\n<>"):
            r.problems.append(f"MINQING_SMTP_FROM must be an e-mail address, got {sender!r}")
        starttls_raw = (r.text("MINQING_SMTP_STARTTLS") or "no").strip().lower()
        if starttls_raw not in _BOOLEANS:
            r.problems.append(f"MINQING_SMTP_STARTTLS must be yes or no (1/0, true/false, on/off), got {starttls_raw!r}")
        user, password = r.text("MINQING_SMTP_USER"), r.secret("MINQING_SMTP_PASSWORD")
        if bool(user) != bool(password) and not any(p.startswith("MINQING_SMTP_PASSWORD") for p in r.problems):
            r.problems.append("MINQING_SMTP_USER and MINQING_SMTP_PASSWORD(_FILE) go together: set both or neither")
        smtp = SmtpSettings(host=r.host("MINQING_SMTP_HOST", "localhost"), port=r.port("MINQING_SMTP_PORT", 25) or 25,
                            sender=sender, user=user, password=password,
                            starttls=_BOOLEANS.get(starttls_raw, False),
                            timeout=r.number("MINQING_SMTP_TIMEOUT", 10, 0.5, 120))
    settings = NotifySettings(sms=sms, smtp=smtp,
                              max_attempts=int(r.number("MINQING_NOTIFY_MAX_ATTEMPTS", 5, 1, 20)),
                              backoff_seconds=r.number("MINQING_NOTIFY_BACKOFF_SECONDS", 2, 0.1, 3600),
                              interval=r.number("MINQING_NOTIFY_SECONDS", 0.5, 0.1, 60),
                              webhook_timeout=r.number("MINQING_WEBHOOK_TIMEOUT", 10, 0.5, 120),
                              lease_seconds=r.number("MINQING_NOTIFY_LEASE_SECONDS", 120, 1, 3600))
    try:                    # checked with the rest at start, not first when a result is composed
        load_rating_link(environ)
    except ConfigError as exc:
        r.problems.extend(exc.problems)
    if r.problems:
        raise ConfigError(r.problems)
    return settings


@dataclass(frozen=True)
class RatingLinkSettings:
    """The signed rating link (services/notify/rating_link.py): `secret` signs it (None: no links are
    sent and every link is refused), `public_url` is where residents reach the console."""
    secret: bytes | None
    public_url: str


def load_rating_link(environ=None) -> RatingLinkSettings:
    """MINQING_RATING_LINK_SECRET(_FILE), at least 32 characters (`minqing run` keeps one in its run
    directory when neither is set); MINQING_PUBLIC_URL, the console's address as residents reach it
    (default http://127.0.0.1:<MINQING_HTTP_PORT>)."""
    r = Reader(environ)
    secret = r.secret("MINQING_RATING_LINK_SECRET")
    if secret is not None and len(secret) < 32:
        r.problems.append("MINQING_RATING_LINK_SECRET must be at least 32 characters (a random one: "
                          "python -c 'import secrets; print(secrets.token_urlsafe(32))')")
    public_url = r.text("MINQING_PUBLIC_URL") or f"http://127.0.0.1:{r.port('MINQING_HTTP_PORT', 8000) or 8000}"
    if urlsplit(public_url).scheme not in ("http", "https") or not urlsplit(public_url).netloc:
        r.problems.append("MINQING_PUBLIC_URL must be an http:// or https:// address, such as https://12345.example.gov.cn")
    if r.problems:
        raise ConfigError(r.problems)
    return RatingLinkSettings(secret.encode() if secret else None, public_url.rstrip("/"))


_RATING_LINK: list[RatingLinkSettings] = []


def rating_link() -> RatingLinkSettings:
    """This process's rating-link settings, read once."""
    if not _RATING_LINK:
        _RATING_LINK.append(load_rating_link())
    return _RATING_LINK[0]
