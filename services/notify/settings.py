"""Notify's channel settings, from environment variables in one place (README, "Configuration").

Without MINQING_SMS_URL or MINQING_SMTP_HOST those channels are not configured and what would go
through them is written to the log channel instead (the embedded default), recorded as sent by `log`.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass

from minqing.config import env_number

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


def load() -> NotifySettings:
    sms = None
    if os.environ.get("MINQING_SMS_URL"):
        template = os.environ.get("MINQING_SMS_BODY") or DEFAULT_SMS_BODY
        try:
            json.loads(template.replace("{to}", "x").replace("{text}", "x").replace("{key}", "x"))
        except ValueError:
            raise SystemExit("configuration error: MINQING_SMS_BODY must be JSON once {to}, {text} and {key} are filled")
        sms = SmsSettings(url=os.environ["MINQING_SMS_URL"], body_template=template,
                          authorization=os.environ.get("MINQING_SMS_AUTHORIZATION") or None,
                          timeout=env_number("MINQING_SMS_TIMEOUT", 10, 0.5, 120))
    smtp = None
    if os.environ.get("MINQING_SMTP_HOST"):
        smtp = SmtpSettings(host=os.environ["MINQING_SMTP_HOST"], port=int(env_number("MINQING_SMTP_PORT", 25, 1, 65535)),
                            sender=os.environ.get("MINQING_SMTP_FROM") or "minqing@localhost",
                            user=os.environ.get("MINQING_SMTP_USER") or None,
                            password=os.environ.get("MINQING_SMTP_PASSWORD") or None,
                            starttls=os.environ.get("MINQING_SMTP_STARTTLS", "") in ("1", "true", "yes"),
                            timeout=env_number("MINQING_SMTP_TIMEOUT", 10, 0.5, 120))
    return NotifySettings(sms=sms, smtp=smtp,
                          max_attempts=int(env_number("MINQING_NOTIFY_MAX_ATTEMPTS", 5, 1, 20)),
                          backoff_seconds=env_number("MINQING_NOTIFY_BACKOFF_SECONDS", 2, 0.1, 3600),
                          interval=env_number("MINQING_NOTIFY_SECONDS", 0.5, 0.1, 60),
                          webhook_timeout=env_number("MINQING_WEBHOOK_TIMEOUT", 10, 0.5, 120),
                          lease_seconds=env_number("MINQING_NOTIFY_LEASE_SECONDS", 120, 1, 3600))
