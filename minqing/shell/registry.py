"""The services the shell runs, by name: `minqing service NAME`, the gateway's routes and the OpenAPI
document come from here (the kernel never names a service)."""
from __future__ import annotations

import importlib

SERVICES = {
    "intake": "services.intake.service:IntakeService",
    "routing": "services.routing.service:RoutingService",
    "notify": "services.notify.service:NotifyService",
    "assessment": "services.assessment.service:AssessmentService",
}


def service_class(name: str):
    module, _, attr = SERVICES[name].partition(":")
    return getattr(importlib.import_module(module), attr)
