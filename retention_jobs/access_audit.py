"""Collect the report's evidence on how the embedded query endpoint is guarded (notice §13):
the personal users and their roles, what the live endpoint answers a request without a
user, and the access log. Verdicts are made in `report.py`.
"""

from __future__ import annotations

import urllib.error
import urllib.request

from pipeline.access_log import read_entries
from pipeline.access_roles import Role
from pipeline.access_users import UserStore
from pipeline.chdb_owner import read_owner
from pipeline.config import Settings
from retention_jobs.report_evidence import AccessEvidence

_PROBE_TIMEOUT_S = 10


def access_evidence(settings: Settings) -> AccessEvidence | None:
    """The evidence in embedded mode; None with CLICKHOUSE_URL (the server's own users and grants)."""
    if not settings.embedded_clickhouse:
        return None
    users = UserStore(settings.users_file).users().values()
    by_role = {role.value: sum(1 for u in users if u.role is role) for role in Role}
    refused, probe = _probe_anonymous(settings)
    path = settings.access_log_file
    try:
        private = path.stat().st_mode & 0o077 == 0
    except FileNotFoundError:
        return AccessEvidence(by_role, probe, refused, None)
    entries = list(read_entries(path))
    accepted = [e for e in entries if e.outcome == "accepted"]
    return AccessEvidence(
        by_role,
        probe,
        refused,
        len(entries),
        log_accepted=len(accepted),
        log_users=len({e.user for e in accepted}),
        log_private=private,
        last_access=entries[-1].at if entries else None,
    )


def _probe_anonymous(settings: Settings) -> tuple[bool, str]:
    """Send the live endpoint a query without a user: refused (401) is the kept promise."""
    owner = read_owner(settings.chdb_path)
    if owner is None:
        return True, "no sink is serving the store now; its endpoint always requires a user"
    request = urllib.request.Request(owner.url() + "/", data=b"SELECT 1", method="POST")
    try:
        with urllib.request.urlopen(request, timeout=_PROBE_TIMEOUT_S) as response:
            return False, f"an anonymous query to {owner.url()} was answered (HTTP {response.status})"
    except urllib.error.HTTPError as error:
        if error.code in (401, 403):
            return True, f"an anonymous query to the live endpoint {owner.url()} was refused: HTTP {error.code}"
        return False, f"an anonymous query to {owner.url()} failed with HTTP {error.code} instead of being refused"
    except OSError as exc:
        return True, f"the endpoint {owner.url()} did not answer ({exc.__class__.__name__}); it always requires a user"
