"""Every table of the stack, the services' included: `minqing db init`, the runner and rebuilds create
them all (each service also creates its own when it starts)."""
from __future__ import annotations


def all_metadata():
    from services.assessment.tables import metadata_obj as assessment
    from services.intake.tables import metadata_obj as intake
    from services.notify.tables import metadata_obj as notify
    from services.routing.tables import metadata_obj as routing
    from minqing.vault import metadata_obj as vault
    return [intake, routing, notify, assessment, vault]
