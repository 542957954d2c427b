"""The personal-data vault (DESIGN principle 8).

Names, phone numbers and identity numbers live here, never in events. Each resident (a *subject*)
has their own key, stored wrapped under the master key; their fields are encrypted with it.
Erasing a resident destroys that key (crypto-shredding): their data becomes unreadable while the
ledger, which only holds the subject reference and masked forms, stays intact and verifiable.

A keyed hash of the normalised phone number (a blind index) lets intake recognise a returning
resident without storing the number in clear. Its key is derived from the primary master key with
HKDF; lookups also accept the indexes of older keys and of the derivation used before HKDF, so
rotation and the upgrade need no migration step (docs/operations.md, "Vault keys").
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

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
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


def parse_keys(text: str) -> list[bytes]:
    """Keys one a line (or comma-separated), newest first; blank lines and `#` comments ignored."""
    keys = [k.strip().encode() for line in text.splitlines() for k in line.split("#")[0].split(",") if k.strip()]
    if not keys:
        raise VaultError("the vault key list is empty (see `minqing vault keygen`)")
    for key in keys:
        try:
            Fernet(key)
        except ValueError:
            raise VaultError("every vault key must be 32 url-safe base64-encoded bytes (see `minqing vault keygen`)")
    return keys


def load_keys(path: Path, create: bool = False) -> list[bytes]:
    """The keys in `path`; with `create`, a new file with one fresh key (mode 0600) when there is none."""
    if create:
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            pass
        else:
            with os.fdopen(fd, "wb") as handle:
                handle.write(Fernet.generate_key() + b"\n")
    try:
        return parse_keys(path.read_text())
    except OSError as exc:
        raise VaultError(f"cannot read the vault key file {path} ({exc.strerror or type(exc).__name__})")


def master_keys(settings) -> list[bytes]:
    """The vault's keys as configured (minqing.config): MINQING_VAULT_KEY, else MINQING_VAULT_KEY_FILE,
    else — the embedded default only — `vault.key` in the run directory, made on first use."""
    if settings.vault_key:
        return parse_keys(settings.vault_key)
    if settings.vault_key_file is None:
        raise VaultError("MINQING_VAULT_KEY_FILE (or MINQING_VAULT_KEY) must be set when MINQING_DATABASE_URL is "
                         "PostgreSQL: the vault key never defaults to a file beside the data "
                         "(make one with `minqing vault keygen --out FILE`)")
    return load_keys(settings.vault_key_file, create=settings.embedded)


def load_master_key(path: Path) -> bytes:
    """The primary key in `path` (created on first use): for callers that hold a key file only."""
    return load_keys(path, create=True)[0]


def rotate(path: Path) -> list[bytes]:
    """Put a new key first in the key file (it becomes the primary); the old keys stay to decrypt.
    The file is replaced atomically, keeping its mode."""
    keys = load_keys(path)
    new = [Fernet.generate_key(), *keys]
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(b"\n".join(new) + b"\n")
    os.replace(tmp, path)
    return new


def _index_key(master: bytes) -> bytes:
    """The blind-index key: HKDF-SHA256 of the master key, for this one purpose (its own `info`)."""
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None,
                info=b"minqing/vault/blind-index/v1").derive(base64.urlsafe_b64decode(master))


def _legacy_index_key(master: bytes) -> bytes:
    """The derivation before HKDF (sha256 of a constant and the key): still accepted on lookup."""
    return hashlib.sha256(b"minqing-blind-index|" + base64.urlsafe_b64decode(master)).digest()


class Vault:
    """Keys newest first: the first encrypts and makes new blind indexes; all of them decrypt, and a
    phone is looked up under every key's blind index (HKDF and the legacy derivation), so nothing
    written before a rotation or before HKDF is lost. A row found under an older index is moved to
    the current one when the resident is stored again; `minqing vault rotate --reencrypt` moves all."""

    def __init__(self, master_key: bytes | list[bytes]):
        keys = [master_key] if isinstance(master_key, bytes) else list(master_key)
        self._master = MultiFernet([Fernet(k) for k in keys])
        # [HKDF(primary), legacy(primary), HKDF(older), legacy(older), …]: the first makes new indexes
        self._index_keys = [derive(k) for k in keys for derive in (_index_key, _legacy_index_key)]

    def lookup_hash(self, phone: str) -> str:
        return self._lookup_hashes(phone)[0]

    def _lookup_hashes(self, phone: str) -> list[str]:
        """The current blind index first, then every older derivation's."""
        digits = normalise_phone(phone).encode()
        return list(dict.fromkeys(hmac.new(k, digits, hashlib.sha256).hexdigest() for k in self._index_keys))

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
        candidates = self._lookup_hashes(fields["phone"]) if fields.get("phone") else []
        lookup = candidates[0] if candidates else None
        if lookup:
            row = conn.execute(select(subjects_table.c.subject, subjects_table.c.wrapped_key)
                               .where(subjects_table.c.lookup.in_(candidates),
                                      subjects_table.c.wrapped_key.is_not(None))).first()
            if row is not None:
                key = Fernet(self._master.decrypt(row.wrapped_key))
                current = conn.execute(select(subjects_table.c.ciphertext)
                                       .where(subjects_table.c.subject == row.subject)).scalar_one()
                merged = {**json.loads(key.decrypt(current)), **fields}     # what the resident told us last wins
                conn.execute(update(subjects_table).where(subjects_table.c.subject == row.subject)
                             .values(ciphertext=key.encrypt(json.dumps(merged, ensure_ascii=False).encode()),
                                     lookup=lookup))
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
            subjects_table.c.lookup.in_(self._lookup_hashes(phone)), subjects_table.c.wrapped_key.is_not(None))).scalar()

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

    def reencrypt(self, conn: Connection) -> int:
        """Wrap every live subject's key under the primary key, and recompute its blind index from the
        stored phone number; returns how many subjects were rewritten. (Sealed service secrets, e.g.
        channel signing secrets, stay under the key that sealed them: keep old keys in the list.)"""
        count = 0
        rows = conn.execute(select(subjects_table).where(subjects_table.c.wrapped_key.is_not(None))).all()
        for row in rows:
            subject_key = self._master.decrypt(row.wrapped_key)
            fields = json.loads(Fernet(subject_key).decrypt(row.ciphertext))
            lookup = self.lookup_hash(fields["phone"]) if fields.get("phone") else None
            conn.execute(update(subjects_table).where(subjects_table.c.subject == row.subject)
                         .values(wrapped_key=self._master.encrypt(subject_key), lookup=lookup))
            count += 1
        return count

    @staticmethod
    def erase(conn: Connection, subject: str, at: str) -> bool:
        result = conn.execute(update(subjects_table).where(subjects_table.c.subject == subject,
                                                           subjects_table.c.wrapped_key.is_not(None))
                              .values(wrapped_key=None, lookup=None, erased_at=at))
        return result.rowcount == 1
