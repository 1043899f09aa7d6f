"""Pure: password hashes and the authenticator of the embedded endpoint's users."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipeline.access_roles import GRANTS, Role
from pipeline.access_users import (
    OWNER_USER,
    Authenticator,
    UserStore,
    create_owner_credential,
    hash_password,
    read_owner_credential,
    verify_password,
)
from pipeline.exceptions import AccessError


def test_hashes_are_salted_slow_and_verified() -> None:
    first, second = hash_password("s3cret-pass"), hash_password("s3cret-pass")
    assert first != second and first.startswith("scrypt$16384$8$1$")
    assert "s3cret-pass" not in first
    assert verify_password("s3cret-pass", first) and verify_password("s3cret-pass", second)
    assert not verify_password("s3cret-pasS", first)
    assert not verify_password("s3cret-pass", "plain$s3cret-pass")


def test_the_authenticator_knows_users_roles_and_the_owner(tmp_path: Path) -> None:
    store = UserStore(tmp_path / "access" / "users.json")
    store.add("alice", Role.analyst, "alice-pass-1", "2026-01-01T00:00:00+00:00")
    owner = create_owner_credential(tmp_path / "chdb")
    auth = Authenticator(store, owner)

    assert auth.authenticate("alice", "alice-pass-1") is Role.analyst
    assert auth.authenticate("alice", "alice-pass-1") is Role.analyst  # remembered, still checked
    assert auth.authenticate("alice", "wrong") is None
    assert auth.authenticate("mallory", "alice-pass-1") is None
    assert auth.authenticate(OWNER_USER, owner.password.get()) is Role.pipeline
    assert auth.authenticate(OWNER_USER, "") is None
    assert read_owner_credential(tmp_path / "chdb") == owner

    store.set_password("alice", "a-new-password")
    assert auth.authenticate("alice", "alice-pass-1") is None  # the remembered check is gone
    store.remove("alice")
    assert auth.authenticate("alice", "a-new-password") is None


@pytest.mark.parametrize("name", ["", "1abc", "a b", "x" * 65, OWNER_USER, "../etc"])
def test_user_names_are_plain_account_names(tmp_path: Path, name: str) -> None:
    with pytest.raises(AccessError):
        UserStore(tmp_path / "users.json").add(name, Role.analyst, "long-enough", "t")


def test_analysts_read_the_views_only() -> None:
    analyst, dpo = GRANTS[Role.analyst], GRANTS[Role.dpo]
    assert analyst.may_read("analyst.calls") and not analyst.may_read("records.calls")
    assert not analyst.may_read("system.tables") and analyst.may_read("system.settings")
    assert dpo.may_read("records.calls") and not dpo.may_read("system.mutations")
