"""A resident's tracking PIN, kept for the receipt without ever being written in clear (issue #18.6).

Intake makes the PIN at registration and keeps only its hash for checking; the receipt SMS still has
to tell it to the resident. So intake seals it in the personal-data vault under the resident's
subject (`seal_pin`, in the registration's transaction), and notify unseals it just before sending
(`unseal_pin`), as it reveals the phone number. The outbox row holds a slot (`PIN_SLOT`), never the
PIN; events and logs never see it; erasing the resident (crypto-shredding) erases their PINs too.
"""
from __future__ import annotations

from sqlalchemy import Connection, select

from minqing.vault import Vault, subjects_table

PIN_SLOT = "⟦PIN⟧"          # what a rendered receipt holds where the PIN goes, until it is sent
FIELD = "pins"              # vault field: {case id: PIN}


def seal_pin(conn: Connection, vault: Vault, subject: str | None, case_id: str, pin: str) -> bool:
    """Keep `pin` for `case_id` in the resident's vault entry; False when there is no resident
    (an anonymous report) or their entry is erased. Run it in the registration's transaction."""
    if not subject:
        return False
    # lock the entry: two reports of one resident at once must not drop each other's PIN
    locked = select(subjects_table.c.subject).where(subjects_table.c.subject == subject)
    if conn.engine.dialect.name == "postgresql":
        locked = locked.with_for_update()
    if conn.execute(locked).first() is None:
        return False
    fields = vault.reveal(conn, subject)
    if fields is None:
        return False
    pins = dict(fields.get(FIELD) or {})
    pins[case_id] = pin
    return vault.rewrite(conn, subject, {**fields, FIELD: pins})


def unseal_pin(conn: Connection, vault: Vault, subject: str | None, case_id: str) -> str | None:
    """The PIN of case `case_id`, or None (anonymous, erased, or registered before PINs were sealed)."""
    if not subject:
        return None
    fields = vault.reveal(conn, subject)
    return ((fields or {}).get(FIELD) or {}).get(case_id)


def fill_pin(body: str, pin: str | None, shown: bool) -> str:
    """The receipt as sent: the PIN in its slot when the channel delivers to the resident (`shown`);
    masked for the log channel, which only writes what would go; empty-handed when unknown."""
    if PIN_SLOT not in body:
        return body
    return body.replace(PIN_SLOT, (pin if shown else "******") if pin else "——")
