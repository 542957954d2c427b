"""Notify's settings (issue #15 item 2): every bad variable named in one error, and the SMS and SMTP
secrets readable from files (`*_FILE`), like the kernel's (minqing.config)."""
from __future__ import annotations

import pytest

from minqing.config import ConfigError
from services.notify.settings import load


def test_every_bad_setting_is_named_at_once():
    with pytest.raises(ConfigError) as caught:
        load({"MINQING_SMS_URL": "ftp://sms.example", "MINQING_SMS_BODY": "{not json", "MINQING_SMS_TIMEOUT": "0",
              "MINQING_SMTP_HOST": "mail.example", "MINQING_SMTP_PORT": "99999", "MINQING_SMTP_FROM": "nobody",
              "MINQING_SMTP_STARTTLS": "maybe", "MINQING_SMTP_USER": "u",
              "MINQING_NOTIFY_MAX_ATTEMPTS": "50", "MINQING_WEBHOOK_TIMEOUT": "x"})
    named = " ".join(caught.value.problems)
    for variable in ("MINQING_SMS_URL", "MINQING_SMS_BODY", "MINQING_SMS_TIMEOUT", "MINQING_SMTP_PORT",
                     "MINQING_SMTP_FROM", "MINQING_SMTP_STARTTLS", "MINQING_SMTP_PASSWORD",
                     "MINQING_NOTIFY_MAX_ATTEMPTS", "MINQING_WEBHOOK_TIMEOUT"):
        assert variable in named, variable
    assert len(caught.value.problems) == 9
    assert str(caught.value).startswith("configuration error:\n  - ")


def test_sms_and_smtp_secrets_come_from_files(tmp_path):
    (tmp_path / "sms-url").write_text("https://sms.example/send?key=k3y\n")
    (tmp_path / "sms-auth").write_text("Bearer s3cret\n")
    (tmp_path / "smtp-password").write_text("pa55word\n")
    settings = load({"MINQING_SMS_URL_FILE": str(tmp_path / "sms-url"),
                     "MINQING_SMS_AUTHORIZATION_FILE": str(tmp_path / "sms-auth"),
                     "MINQING_SMTP_HOST": "mail.example", "MINQING_SMTP_USER": "minqing",
                     "MINQING_SMTP_PASSWORD_FILE": str(tmp_path / "smtp-password"), "MINQING_SMTP_STARTTLS": "yes"})
    assert settings.sms.url == "https://sms.example/send?key=k3y" and settings.sms.authorization == "Bearer s3cret"
    assert (settings.smtp.user, settings.smtp.password, settings.smtp.starttls) == ("minqing", "pa55word", True)


def test_a_secret_given_twice_or_unreadable_is_named():
    with pytest.raises(ConfigError) as caught:
        load({"MINQING_SMTP_HOST": "mail.example", "MINQING_SMTP_USER": "u", "MINQING_SMTP_PASSWORD": "p",
              "MINQING_SMTP_PASSWORD_FILE": "/nonexistent", "MINQING_SMS_URL_FILE": "/nonexistent/sms"})
    assert caught.value.problems == [
        "MINQING_SMS_URL_FILE: cannot read /nonexistent/sms (No such file or directory)",
        "MINQING_SMTP_PASSWORD and MINQING_SMTP_PASSWORD_FILE are both set; keep one"]


def test_nothing_set_is_the_log_channel():
    settings = load({})
    assert settings.sms is None and settings.smtp is None and settings.max_attempts == 5
