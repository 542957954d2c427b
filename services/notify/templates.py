"""Message templates (Jinja2): `templates/<language>/<name>.txt`, Simplified Chinese by default,
English available, each overridable per county in its policy (`notify.templates.<language>.<name>`).

Templates get only what the message needs: tracking numbers, categories, units, cadres' names (public
officials), deadlines in the county's local time (minqing/localtime.py: `2026年12月1日 03:27`). Never a
resident's name, phone or address. The receipt's `pin` is a slot (minqing/pins.py) the sender fills
with the PIN just before sending: the outbox never holds it.
A county override that fails to render (say, a misspelt variable) falls back to the built-in text,
so a typo in a policy cannot stop notifications; the failure is logged.
"""
from __future__ import annotations

import logging
from datetime import datetime
from functools import lru_cache
from pathlib import Path
from typing import Any, Mapping

import jinja2
from jinja2.sandbox import SandboxedEnvironment

from minqing.localtime import plain

log = logging.getLogger("minqing.notify")
ROOT = Path(__file__).resolve().parent / "templates"
_ENV = SandboxedEnvironment(undefined=jinja2.StrictUndefined, autoescape=False,
                            loader=jinja2.FileSystemLoader(str(ROOT)))

TITLES = {
    "zh": {"receipt": "诉求受理回执", "assignment": "派单通知", "deadline_warning": "期限提醒", "overdue": "超期通知",
           "escalation": "升级通知", "result": "办理结果", "follow_up": "回访", "on_site_day": "驻点工作日公告"},
    "en": {"receipt": "Request received", "assignment": "New assignment", "deadline_warning": "Deadline reminder",
           "overdue": "Overdue", "escalation": "Escalated", "result": "Result", "follow_up": "Follow-up",
           "on_site_day": "On-site day"},
}


@lru_cache(maxsize=256)
def _compiled(source: str) -> jinja2.Template:
    return _ENV.from_string(source)


def render(name: str, language: str, context: Mapping[str, Any], overrides: Mapping[str, Mapping[str, str]] | None = None) -> str:
    source = ((overrides or {}).get(language) or {}).get(name)
    if source:
        try:
            return _compiled(source).render(**context).strip()
        except Exception as exc:        # a TemplateError, or a TypeError from `{{ tracking_no + 1 }}`
            log.warning("the county's %s/%s template failed (%s); the built-in text is used", language, name, exc)
    return _ENV.get_template(f"{language}/{name}.txt").render(**context).strip()


def title(name: str, language: str) -> str:
    return TITLES[language][name]


def local_time(instant: str | datetime, tz: str, language: str) -> str:
    """A time as the resident or cadre reads it: local, to the minute, in plain words."""
    return plain(instant, tz, language)
