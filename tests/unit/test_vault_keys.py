"""Vault keys: rotation keeps old data readable; the HKDF blind index still finds residents stored
under the older sha256 derivation or an older key."""
from __future__ import annotations

import hashlib
import hmac

import pytest
from cryptography.fernet import Fernet
from sqlalchemy import create_engine, select, update

from minqing import vault as vault_mod
from minqing.vault import Vault, subjects_table


@pytest.fixture
def engine(tmp_path):
    engine = create_engine(f"sqlite:///{tmp_path / 'v.db'}")
    vault_mod.metadata_obj.create_all(engine)
    return engine


def test_blind_index_is_hkdf_not_the_legacy_hash():
    key = Fernet.generate_key()
    legacy = hmac.new(vault_mod._legacy_index_key(key), b"13812345678", hashlib.sha256).hexdigest()
    assert Vault(key).lookup_hash("138-1234-5678") != legacy
    assert vault_mod._index_key(key) != vault_mod._legacy_index_key(key)


def test_rows_indexed_the_old_way_are_found_and_moved(engine):
    key = Fernet.generate_key()
    vault = Vault(key)
    legacy = hmac.new(vault_mod._legacy_index_key(key), b"13812345678", hashlib.sha256).hexdigest()
    with engine.begin() as conn:
        subject = vault.store(conn, {"name": "王", "phone": "13812345678"})
        conn.execute(update(subjects_table).values(lookup=legacy))      # as written before HKDF
    with engine.begin() as conn:
        assert vault.subject_for_phone(conn, "13812345678") == subject
        assert vault.store(conn, {"phone": "13812345678", "name": "王五"}) == subject
        assert conn.execute(select(subjects_table.c.lookup)).scalar() == vault.lookup_hash("13812345678")


def test_rotation_keeps_old_rows_readable_and_reencrypt_moves_them(engine, tmp_path):
    path = tmp_path / "keys"
    old_keys = vault_mod.load_keys(path, create=True)
    with engine.begin() as conn:
        subject = Vault(old_keys).store(conn, {"name": "李", "phone": "13900000001"})
        sealed = Vault(old_keys).seal(b"channel secret")
    keys = vault_mod.rotate(path)
    assert len(keys) == 2 and keys[1] == old_keys[0] and path.stat().st_mode & 0o777 == 0o600
    rotated = Vault(vault_mod.load_keys(path))
    with engine.begin() as conn:
        assert rotated.reveal(conn, subject)["name"] == "李"
        assert rotated.subject_for_phone(conn, "13900000001") == subject
        assert rotated.unseal(sealed) == b"channel secret"
        assert rotated.reencrypt(conn) == 1
    with engine.begin() as conn:
        assert Vault(keys[0]).reveal(conn, subject)["name"] == "李"       # the new key alone now suffices
        assert Vault(keys[0]).subject_for_phone(conn, "13900000001") == subject


def test_bad_key_lists_are_refused():
    with pytest.raises(vault_mod.VaultError):
        vault_mod.parse_keys("not-a-key\n")
    with pytest.raises(vault_mod.VaultError):
        vault_mod.parse_keys("# only a comment\n")
    assert len(vault_mod.parse_keys(f"{Fernet.generate_key().decode()}\n# old:\n{Fernet.generate_key().decode()}\n")) == 2
