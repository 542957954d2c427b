"""The personal-data vault (DESIGN principle 8).

Names, phone numbers and identity numbers live here, never in events. Each resident (a *subject*)
has their own key, stored wrapped under the master key; their fields are encrypted with it.
Erasing a resident destroys that key (crypto-shredding): their data becomes unreadable while the
ledger, which only holds the subject reference and masked forms, stays intact and verifiable.

A keyed hash of the normalised phone number (a blind index) lets intake recognise a returning
resident without storing the number in clear.
"""
from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import re
import uuid
from pathlib import Path

from cryptography.fernet import Fernet, InvalidToken
from sqlalchemy import Column, Connection, LargeBinary, MetaData, String, Table, select, update
from sqlalchemy.exc import IntegrityError

metadata_obj = MetaData()

subjects_table = Table(
    "vault_subjects", metadata_obj,
    Column("subject", String(36), primary_key=True),
    Column("lookup", String(64), nullable=True, unique=True),   # blind index of the phone number
    Column("wrapped_key", LargeBinary, nullable=True),          # NULL once erased
    Column("ciphertext", LargeBinary, nullable=True),
    Column("erased_at", String(32), nullable=True),
)


class VaultError(Exception):
    pass


def normalise_phone(phone: str) -> str:
    digits = re.sub(r"\D", "", phone)
    return digits[2:] if digits.startswith("86") and len(digits) == 13 else digits


def load_master_key(path: Path) -> bytes:
    """The master key from MINQING_VAULT_KEY, else from `path` (created, mode 0600, on first use)."""
    env = os.environ.get("MINQING_VAULT_KEY")
    if env:
        key = env.encode()
    else:
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            key = path.read_bytes().strip()
        else:
            key = Fernet.generate_key()
            with os.fdopen(fd, "wb") as handle:
                handle.write(key)
    try:
        Fernet(key)
    except ValueError:
        raise VaultError("the vault master key must be 32 url-safe base64-encoded bytes (see `minqing vault keygen`)")
    return key


class Vault:
    def __init__(self, master_key: bytes):
        self._master = Fernet(master_key)
        self._index_key = hashlib.sha256(b"minqing-blind-index|" + base64.urlsafe_b64decode(master_key)).digest()

    def lookup_hash(self, phone: str) -> str:
        return hmac.new(self._index_key, normalise_phone(phone).encode(), hashlib.sha256).hexdigest()

    def store(self, conn: Connection, fields: dict[str, str]) -> str:
        """Keep a resident's fields; return their subject reference (reused for a known phone)."""
        for _ in range(3):
            try:
                with conn.begin_nested():
                    return self._store(conn, fields)
            except IntegrityError:       # the same phone registered concurrently: reuse that subject
                continue
        raise VaultError("could not store the resident's details")

    def _store(self, conn: Connection, fields: dict[str, str]) -> str:
        lookup = self.lookup_hash(fields["phone"]) if fields.get("phone") else None
        if lookup:
            row = conn.execute(select(subjects_table.c.subject, subjects_table.c.wrapped_key)
                               .where(subjects_table.c.lookup == lookup, subjects_table.c.wrapped_key.is_not(None))
                               ).first()
            if row is not None:
                key = Fernet(self._master.decrypt(row.wrapped_key))
                current = conn.execute(select(subjects_table.c.ciphertext)
                                       .where(subjects_table.c.subject == row.subject)).scalar_one()
                merged = {**json.loads(key.decrypt(current)), **fields}     # what the resident told us last wins
                conn.execute(update(subjects_table).where(subjects_table.c.subject == row.subject)
                             .values(ciphertext=key.encrypt(json.dumps(merged, ensure_ascii=False).encode())))
                return row.subject
        subject = str(uuid.uuid4())
        subject_key = Fernet.generate_key()
        conn.execute(subjects_table.insert().values(
            subject=subject, lookup=lookup, wrapped_key=self._master.encrypt(subject_key),
            ciphertext=Fernet(subject_key).encrypt(json.dumps(fields, ensure_ascii=False).encode())))
        return subject

    def rewrite(self, conn: Connection, subject: str, fields: dict) -> bool:
        """Replace a subject's fields (under its own key); False when the subject is unknown or erased."""
        row = conn.execute(select(subjects_table.c.wrapped_key).where(subjects_table.c.subject == subject)).first()
        if row is None or row.wrapped_key is None:
            return False
        key = Fernet(self._master.decrypt(row.wrapped_key))
        conn.execute(update(subjects_table).where(subjects_table.c.subject == subject)
                     .values(ciphertext=key.encrypt(json.dumps(fields, ensure_ascii=False).encode())))
        return True

    def seal(self, data: bytes) -> bytes:
        """Encrypt a service secret (e.g. a channel's signing secret) under the master key."""
        return self._master.encrypt(data)

    def unseal(self, token: bytes) -> bytes:
        return self._master.decrypt(token)

    def subject_for_phone(self, conn: Connection, phone: str) -> str | None:
        return conn.execute(select(subjects_table.c.subject).where(
            subjects_table.c.lookup == self.lookup_hash(phone), subjects_table.c.wrapped_key.is_not(None))).scalar()

    def reveal(self, conn: Connection, subject: str) -> dict[str, str] | None:
        """The resident's fields, or None when unknown or erased."""
        row = conn.execute(select(subjects_table).where(subjects_table.c.subject == subject)).first()
        if row is None or row.wrapped_key is None:
            return None
        try:
            key = Fernet(self._master.decrypt(row.wrapped_key))
            return json.loads(key.decrypt(row.ciphertext))
        except InvalidToken:
            raise VaultError(f"subject {subject}: cannot decrypt (wrong master key?)")

    @staticmethod
    def erase(conn: Connection, subject: str, at: str) -> bool:
        result = conn.execute(update(subjects_table).where(subjects_table.c.subject == subject,
                                                           subjects_table.c.wrapped_key.is_not(None))
                              .values(wrapped_key=None, lookup=None, erased_at=at))
        return result.rowcount == 1
