"""Personal users of the embedded query endpoint, and the local owner credential.

ClickHouse-style users for embedded mode: a name, a role (pipeline/access_roles.py) and
a password kept only as a slow salted hash (scrypt, n=2**14, r=8, p=1), in one JSON file
`<data dir>/access/users.json` (directory 0700, file 0600, replaced atomically). Names are
staff account names (letters, digits, `._-`, at most 64), never customers' data.

The owner credential is the sink's own: when the sink serves the endpoint it writes a
fresh random password for the user `records_owner` (role pipeline) to
`<chdb dir>.owner.credential` (0600), next to the owner file; `records sql`, the report
and the other CLI checks of the same OS user read it from there. It is not a personal
user and is replaced on every sink start.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import re
import secrets
from dataclasses import dataclass
from pathlib import Path

from pipeline.access_roles import Role, parse_role
from pipeline.config import Secret
from pipeline.exceptions import AccessError

OWNER_USER = "records_owner"
_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9._-]{0,63}$")
_SCRYPT = {"n": 2**14, "r": 8, "p": 1}
_MIN_PASSWORD = 8


@dataclass(frozen=True)
class User:
    """One personal user: the password only as `scrypt$n$r$p$salt$hash` (base64)."""

    name: str
    role: Role
    password_hash: str
    created_at: str


def hash_password(password: str) -> str:
    """A salted scrypt hash of `password` in the stored form."""
    salt = secrets.token_bytes(16)
    digest = hashlib.scrypt(password.encode(), salt=salt, dklen=32, maxmem=64 * 1024 * 1024, **_SCRYPT)
    b64 = base64.b64encode
    return f"scrypt${_SCRYPT['n']}${_SCRYPT['r']}${_SCRYPT['p']}${b64(salt).decode()}${b64(digest).decode()}"


def verify_password(password: str, stored: str) -> bool:
    """Whether `password` matches the stored hash (constant-time compare); False when malformed."""
    try:
        scheme, n, r, p, salt, digest = stored.split("$")
        if scheme != "scrypt":
            return False
        expected = base64.b64decode(digest)
        actual = hashlib.scrypt(
            password.encode(),
            salt=base64.b64decode(salt),
            n=int(n),
            r=int(r),
            p=int(p),
            dklen=len(expected),
            maxmem=64 * 1024 * 1024,
        )
    except ValueError:
        return False
    return hmac.compare_digest(actual, expected)


def check_name(name: str) -> str:
    if not _NAME.match(name) or name == OWNER_USER:
        raise AccessError(
            "a user name is 1-64 letters, digits, '.', '_' or '-', starting with a letter "
            f"(and not {OWNER_USER}, the sink's own)"
        )
    return name


def check_new_password(password: str) -> str:
    if len(password) < _MIN_PASSWORD:
        raise AccessError(f"a password needs at least {_MIN_PASSWORD} characters")
    return password


def write_private(path: Path, text: str) -> None:
    """Write `text` to `path` atomically as a 0600 file; a directory it creates is 0700."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as out:
        out.write(text)
    partial.replace(path)


class UserStore:
    """The users file: read on every call (the CLI and the endpoint may be different
    processes), written atomically."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def users(self) -> dict[str, User]:
        try:
            raw = json.loads(self.path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return {}
        except (OSError, ValueError) as exc:
            raise AccessError(f"cannot read the users file {self.path}: {exc.__class__.__name__}") from exc
        try:
            return {
                entry["name"]: User(
                    entry["name"], parse_role(entry["role"]), entry["password_hash"], entry["created_at"]
                )
                for entry in raw["users"]
            }
        except (KeyError, TypeError, ValueError) as exc:
            raise AccessError(f"the users file {self.path} is malformed") from exc

    def get(self, name: str) -> User | None:
        return self.users().get(name)

    def add(self, name: str, role: Role, password: str, created_at: str) -> User:
        users = self.users()
        if check_name(name) in users:
            raise AccessError(f"user {name} exists already (use `records users passwd {name}`)")
        user = User(name, role, hash_password(check_new_password(password)), created_at)
        self._save({**users, name: user})
        return user

    def set_password(self, name: str, password: str) -> None:
        users = self.users()
        if name not in users:
            raise AccessError(f"no user {name}")
        old = users[name]
        users[name] = User(name, old.role, hash_password(check_new_password(password)), old.created_at)
        self._save(users)

    def remove(self, name: str) -> None:
        users = self.users()
        if users.pop(name, None) is None:
            raise AccessError(f"no user {name}")
        self._save(users)

    def _save(self, users: dict[str, User]) -> None:
        entries = [
            {"name": u.name, "role": u.role.value, "password_hash": u.password_hash, "created_at": u.created_at}
            for u in sorted(users.values(), key=lambda u: u.name)
        ]
        write_private(self.path, json.dumps({"users": entries}, indent=1) + "\n")


# ---- the owner credential ---------------------------------------------------------------


@dataclass(frozen=True)
class Credential:
    """A user name and its password, as a client sends them."""

    user: str
    password: Secret


def owner_credential_file(chdb_path: Path) -> Path:
    """`<chdb dir>.owner.credential`, next to the owner file."""
    return chdb_path.with_name(chdb_path.name + ".owner.credential")


def create_owner_credential(chdb_path: Path) -> Credential:
    """A fresh random owner password, written to the 0600 credential file."""
    credential = Credential(OWNER_USER, Secret(secrets.token_urlsafe(32)))
    write_private(
        owner_credential_file(chdb_path),
        json.dumps({"user": credential.user, "password": credential.password.get()}) + "\n",
    )
    return credential


def read_owner_credential(chdb_path: Path) -> Credential | None:
    """The owner credential when this OS user can read it; None otherwise."""
    try:
        raw = json.loads(owner_credential_file(chdb_path).read_text(encoding="utf-8"))
        return Credential(str(raw["user"]), Secret(str(raw["password"])))
    except (OSError, ValueError, KeyError, TypeError):
        return None


def remove_owner_credential(chdb_path: Path) -> None:
    owner_credential_file(chdb_path).unlink(missing_ok=True)


class Authenticator:
    """Checks a user name and password against the owner credential and the users file.

    A successful check is remembered as an HMAC of the password under a per-process key,
    so a client's later requests cost one HMAC instead of one scrypt; a changed users
    file (another hash) invalidates it."""

    def __init__(self, store: UserStore, owner: Credential | None) -> None:
        self.store = store
        self.owner = owner
        self._key = secrets.token_bytes(32)
        self._verified: dict[tuple[str, str], bytes] = {}

    def authenticate(self, name: str, password: str) -> Role | None:
        """The user's role when the password is right; None otherwise."""
        if self.owner is not None and name == self.owner.user:
            ok = hmac.compare_digest(password.encode(), self.owner.password.get().encode())
            return Role.pipeline if ok else None
        user = self.store.get(name)
        if user is None:
            hash_password(password)  # the same time as for a known name
            return None
        mark = hmac.new(self._key, password.encode(), hashlib.sha256).digest()
        known = self._verified.get((name, user.password_hash))
        if known is not None and hmac.compare_digest(known, mark):
            return user.role
        if not verify_password(password, user.password_hash):
            return None
        self._verified[(name, user.password_hash)] = mark
        return user.role
