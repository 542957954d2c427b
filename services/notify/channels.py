"""Delivery channels behind one interface: `send(message)` delivers or raises.

- `log`: writes what would be sent, to the masked recipient only, to the service log (the embedded
  default, and the fallback for a channel that is not configured);
- `sms`: an HTTP SMS gateway (MINQING_SMS_URL), the request body built from a JSON template;
- `email`: SMTP (MINQING_SMTP_HOST);
- `webhook`: an HTTP POST of the message as JSON to a contact's URL (a notice board, a work group bot).

Every channel receives the outbox key, and passes it on where the far side can use it to drop a
repeat (the gateway's `Idempotency-Key` header and body `{key}`, the e-mail's Message-ID).
"""
from __future__ import annotations

import hashlib
import json
import logging
import smtplib
from dataclasses import dataclass
from email.message import EmailMessage
from email.utils import formataddr
from typing import Protocol
from urllib.parse import urlsplit, urlunsplit

import requests

from minqing.netpolicy import check_target
from services.notify.settings import NotifySettings, SmsSettings, SmtpSettings

log = logging.getLogger("minqing.notify.channel")


class DeliveryError(Exception):
    """The channel did not take the message; the text names why without echoing the address."""


@dataclass(frozen=True)
class Message:
    key: str
    address: str | None          # the real address, revealed from the vault just before sending
    recipient_masked: str
    title: str
    body: str


class Channel(Protocol):
    name: str

    def send(self, message: Message) -> None: ...


class LogChannel:
    name = "log"

    def send(self, message: Message) -> None:
        log.info("notification %s to %s: %s", message.key, message.recipient_masked, message.body)


def _json_text(value: str) -> str:
    return json.dumps(value, ensure_ascii=False)[1:-1]


class SmsGateway:
    name = "sms"

    def __init__(self, settings: SmsSettings, session: requests.Session | None = None):
        self.settings = settings
        self.session = session or requests.Session()

    def send(self, message: Message) -> None:
        if not message.address:
            raise DeliveryError("no phone number to send to")
        body = (self.settings.body_template.replace("{to}", _json_text(message.address))
                .replace("{text}", _json_text(message.body)).replace("{key}", _json_text(message.key)))
        headers = {"Content-Type": "application/json; charset=utf-8", "Idempotency-Key": message.key}
        if self.settings.authorization:
            headers["Authorization"] = self.settings.authorization
        try:
            resp = self.session.post(self.settings.url, data=body.encode(), headers=headers,
                                     timeout=self.settings.timeout)
        except requests.RequestException as exc:
            raise DeliveryError(f"SMS gateway unreachable: {type(exc).__name__}") from None
        if not 200 <= resp.status_code < 300:
            raise DeliveryError(f"SMS gateway answered {resp.status_code}")


class SmtpChannel:
    name = "email"

    def __init__(self, settings: SmtpSettings):
        self.settings = settings

    def send(self, message: Message) -> None:
        if not message.address:
            raise DeliveryError("no e-mail address to send to")
        mail = EmailMessage()
        mail["From"] = formataddr(("民情 Minqing", self.settings.sender))
        mail["To"] = message.address
        mail["Subject"] = message.title
        domain = self.settings.sender.rpartition("@")[2] or "minqing"
        mail["Message-ID"] = f"<{hashlib.sha256(message.key.encode()).hexdigest()[:32]}@{domain}>"
        mail["X-Minqing-Key"] = message.key
        mail.set_content(message.body)
        s = self.settings
        try:
            with smtplib.SMTP(s.host, s.port, timeout=s.timeout) as smtp:
                if s.starttls:
                    smtp.starttls()
                if s.user:
                    smtp.login(s.user, s.password or "")
                smtp.send_message(mail)
        except (smtplib.SMTPException, OSError) as exc:
            raise DeliveryError(f"SMTP delivery failed: {type(exc).__name__}") from None


def post(url: str, body: bytes, headers: dict[str, str], *, timeout: float, allow_private: bool,
         session: requests.Session | None = None) -> requests.Response:
    """POST to a URL a county registered, after minqing.netpolicy admits its addresses. A plain-http
    request connects to the address that was checked (no second lookup a DNS rebinding could swap);
    https connects by name so the certificate can be verified (the residual risk is documented)."""
    addresses = check_target(url, allow_private=allow_private)
    parts = urlsplit(url)
    target = url
    headers = dict(headers)
    if parts.scheme == "http":
        host = addresses[0]
        host = f"[{host}]" if ":" in host else host
        target = urlunsplit(("http", f"{host}:{parts.port or 80}", parts.path or "/", parts.query, ""))
        headers["Host"] = parts.netloc.encode("idna").decode("ascii")
    return (session or requests).post(target, data=body, headers=headers, timeout=timeout, allow_redirects=False)


class WebhookChannel:
    name = "webhook"

    def __init__(self, timeout: float, allow_private: bool = False):
        self.timeout, self.allow_private = timeout, allow_private

    def send(self, message: Message) -> None:
        if not message.address:
            raise DeliveryError("no webhook URL to send to")
        body = json.dumps({"key": message.key, "title": message.title, "text": message.body},
                          ensure_ascii=False).encode()
        try:
            resp = post(message.address, body, {"Content-Type": "application/json; charset=utf-8",
                                                "Idempotency-Key": message.key},
                        timeout=self.timeout, allow_private=self.allow_private)
        except requests.RequestException as exc:
            raise DeliveryError(f"webhook unreachable: {type(exc).__name__}") from None
        except ValueError as exc:       # netpolicy.TargetRefused
            raise DeliveryError(f"webhook refused: {exc}") from None
        if not 200 <= resp.status_code < 300:
            raise DeliveryError(f"webhook answered {resp.status_code}")


def build_channels(settings: NotifySettings) -> dict[str, Channel]:
    """The configured channels by name; `log` is always there."""
    channels: dict[str, Channel] = {"log": LogChannel()}
    if settings.sms is not None:
        channels["sms"] = SmsGateway(settings.sms)
    if settings.smtp is not None:
        channels["email"] = SmtpChannel(settings.smtp)
    channels["webhook"] = WebhookChannel(settings.webhook_timeout, allow_private=True)
    return channels
