from pathlib import Path

import pytest
from cryptography.fernet import Fernet

from cargohold.errors import Kind, RegistryError
from cargohold.services.identity import Identity
from cargohold.services.secrets import SecretBox, load_or_create_master_key
from cargohold.storage.meta.engine import make_engine, migrate, sqlite_url
from cargohold.storage.meta.store import MetadataStore


def test_master_key_file_mode(tmp_path: Path) -> None:
    key = load_or_create_master_key(tmp_path)
    assert (tmp_path / "master.key").stat().st_mode & 0o777 == 0o600
    assert load_or_create_master_key(tmp_path) == key


def test_tokens_are_tamper_evident() -> None:
    box = SecretBox(Fernet.generate_key())
    token = box.sign({"k": "AKIA", "e": 5})
    assert box.verify(token) == {"k": "AKIA", "e": 5}
    body, mac = token.split(".")
    assert box.verify(body + "." + mac[:-2] + ("AA" if mac[-2:] != "AA" else "BB")) is None
    assert box.verify(token + "x") is None
    assert box.verify("garbage") is None
    assert SecretBox(Fernet.generate_key()).verify(token) is None


class Clock:
    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


def test_root_credentials_and_tokens(tmp_path: Path) -> None:
    engine = make_engine(sqlite_url(tmp_path))
    migrate(engine)
    clock = Clock()
    identity = Identity(MetadataStore(engine), SecretBox(Fernet.generate_key()), "123456789012", clock)
    created = identity.ensure_root_credentials(tmp_path, None, None)
    assert created is not None
    key_id, secret = created
    assert identity.ensure_root_credentials(tmp_path, None, None) is None  # only once
    assert (tmp_path / "root-credentials").stat().st_mode & 0o777 == 0o600
    assert secret.encode() not in engine.url.database.encode() if engine.url.database else True
    principal = identity.authenticate_basic(key_id, secret)
    assert principal.arn == "arn:aws:iam::123456789012:root"
    with pytest.raises(RegistryError) as exc:
        identity.authenticate_basic(key_id, secret + "x")
    assert exc.value.kind is Kind.UNAUTHORIZED
    token, expires = identity.issue_token(principal)
    assert expires == int(clock.now) + 12 * 3600
    assert identity.authenticate_basic("AWS", token).arn == principal.arn
    clock.now += 12 * 3600 + 1
    with pytest.raises(RegistryError, match="expired"):
        identity.authenticate_basic("AWS", token)
    engine.dispose()


def test_secret_is_encrypted_at_rest(tmp_path: Path) -> None:
    engine = make_engine(sqlite_url(tmp_path))
    migrate(engine)
    identity = Identity(MetadataStore(engine), SecretBox(Fernet.generate_key()), "123456789012")
    identity.ensure_root_credentials(tmp_path, "AKIAPLAINTEXTCHECK", "very-recognisable-secret")
    engine.dispose()
    assert b"very-recognisable-secret" not in (tmp_path / "meta.db").read_bytes()


def test_only_console_tokens_can_be_revoked_and_revocations_expire(tmp_path: Path) -> None:
    engine = make_engine(sqlite_url(tmp_path))
    migrate(engine)
    clock = Clock()
    meta = MetadataStore(engine)
    identity = Identity(meta, SecretBox(Fernet.generate_key()), "123456789012", clock)
    created = identity.ensure_root_credentials(tmp_path, None, None)
    assert created is not None
    principal = identity.authenticate_basic(*created)
    docker_token, _ = identity.issue_token(principal)
    console_token, _ = identity.issue_token(principal, 3600, purpose="console")
    other_console, _ = identity.issue_token(principal, 7200, purpose="console")
    assert not identity.revoke_token(docker_token)  # docker may hold the same ECR login password
    assert identity.authenticate_token(docker_token).arn == principal.arn
    assert not identity.revoke_token("not.a-token")
    assert identity.revoke_token(console_token)
    with pytest.raises(RegistryError, match="signed out"):
        identity.authenticate_token(console_token)
    assert identity.authenticate_token(other_console).arn == principal.arn  # one session, not all
    # Once a token would have expired anyway, its revocation is purged by the next sign-out.
    clock.now += 3601
    assert identity.revoke_token(other_console)
    with pytest.raises(RegistryError, match="expired"):
        identity.authenticate_token(console_token)
    assert meta.purge_settings("revoked-token:", int(clock.now) + 7200) == 1  # only other_console's was left
    engine.dispose()
