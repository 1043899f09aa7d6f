"""The compliance report's verdicts on who can see the data and where it goes: no
profiling, analyst access control, recipients, processing location, access exports and
the embedded endpoint's personal users and access log. Pure: evidence in, `ReportLine` out."""

from __future__ import annotations

import re

from pipeline.clickhouse_ddl import ANALYST_DB, ANALYST_ROLE, access_statements
from pipeline.policy import Policy
from retention_jobs.report_evidence import AccessEvidence, Evidence, ExportsEvidence, ReportLine

# Columns that link a person across records: never in an analyst view (besides the policy's
# direct identifiers).
PSEUDONYMOUS_COLUMNS = ("subject_keys",)
# Names that would betray scoring or profiling of individuals (notice §12).
PROFILING_NAME = re.compile(r"score|profil|propensit|rating|churn|risk", re.IGNORECASE)


def no_profiling_line(policy: Policy, ev: Evidence) -> ReportLine:
    names = [f"records.{t}.{c}" for t, cols in ev.record_columns.items() for c in cols]
    names += [f"analyst.{t}.{c}" for t, cols in ev.analyst_columns.items() for c in cols]
    tables = list(ev.record_columns) + list(ev.analyst_columns) + list(ev.other_tables)
    suspicious = sorted({n for n in names + tables if PROFILING_NAME.search(n.rsplit(".", 1)[-1])})
    evidence = (
        f"policy: {policy.notice.automated_decisions}; {len(tables)} tables/views and {len(names)} columns checked, "
        + ("none named score/profile/rating/risk" if not suspicious else f"suspicious: {', '.join(suspicious)}")
    )
    return ReportLine("no_profiling", "§12", "no automated decision-making or profiling", evidence, not suspicious)


def access_control_line(policy: Policy, ev: Evidence) -> ReportLine:
    forbidden = {name for r in policy.records.values() for name in r.identifier_fields} | set(PSEUDONYMOUS_COLUMNS)
    exposed = sorted(f"analyst.{v}.{c}" for v, cols in ev.analyst_columns.items() for c in cols if c in forbidden)
    missing_views = sorted(r.table for r in policy.records.values() if r.table not in ev.analyst_columns)
    unfiltered = sorted(
        v
        for v in ev.analyst_columns
        if "subject_keys" in ev.record_columns.get(v, ()) and not ev.analyst_restriction_filter.get(v, False)
    )
    passed = not exposed and not missing_views and not unfiltered
    evidence = (
        f"{len(ev.analyst_columns)} analyst views, {sum(len(c) for c in ev.analyst_columns.values())} columns: "
        f"no direct identifier ({len(forbidden)} checked) nor subject key; restricted subjects hidden "
        f"({ev.active_restrictions} active restriction(s)/objection(s))"
    )
    if not passed:
        evidence = "; ".join(
            part
            for part in (
                f"exposed: {', '.join(exposed)}" if exposed else "",
                f"record tables without analyst view: {', '.join(missing_views)}" if missing_views else "",
                f"views not hiding restricted subjects: {', '.join(unfiltered)}" if unfiltered else "",
            )
            if part
        )
    return ReportLine(
        "access_control",
        "§13",
        "analysts see no direct identifiers by default",
        evidence,
        passed,
    )


def recipients_line(policy: Policy, ev: Evidence) -> ReportLine:
    """Notice §6: recipients (group companies, processors) work through the analyst role,
    whose grants reach the identifier-free analyst views only."""
    forbidden = {name for r in policy.records.values() for name in r.identifier_fields} | set(PSEUDONYMOUS_COLUMNS)
    exposed = sorted(f"analyst.{v}.{c}" for v, cols in ev.analyst_columns.items() for c in cols if c in forbidden)
    grants = [g for g in access_statements(policy) if g.startswith("GRANT") and g.endswith(f"TO {ANALYST_ROLE}")]
    beyond = sorted(g for g in grants if f" ON {ANALYST_DB}." not in g)
    passed = bool(ev.analyst_columns) and not exposed and not beyond
    evidence = (
        f"{len(policy.notice.recipients)} recipient(s) of the notice get the {ANALYST_ROLE} role: "
        f"{len(grants)} grant(s), all on {ANALYST_DB}.*; {len(ev.analyst_columns)} analyst views without "
        f"direct identifiers; exports go to the data subject through the DPO only"
    )
    details = tuple(f"exposed: {c}" for c in exposed) + tuple(f"grant beyond the analyst views: {g}" for g in beyond)
    return ReportLine(
        "recipients",
        "§6",
        "recipients see no direct identifier (analyst views only)",
        evidence if passed else "; ".join(details) or "no analyst views found",
        passed,
        details,
    )


def processing_location_line(policy: Policy) -> ReportLine:
    """Notice §7: every store, processor and recipient has a declared location; any outside
    the EU/EEA has a transfer safeguard recorded."""
    processing = policy.processing
    roles = {loc.role for loc in processing.locations}
    missing_roles = sorted({"store", "processor", "recipient"} - roles)
    bad = processing.unsafeguarded()
    details = tuple(
        f"{loc.role}: {loc.name}: {loc.country}"
        + ("" if processing.in_eu_eea(loc) else f" (outside the EU/EEA; safeguard: {loc.safeguard or 'none'})")
        for loc in processing.locations
    )
    outside = sum(1 for loc in processing.locations if not processing.in_eu_eea(loc))
    countries = ", ".join(sorted({loc.country for loc in processing.locations}))
    evidence = (
        f"{len(processing.locations)} declared locations ({countries}); "
        f"{outside} outside the EU/EEA, {len(bad)} of them without a safeguard; "
        f"Kubernetes pinned to {len(processing.kubernetes_regions)} EU/EEA regions"
    )
    if missing_roles:
        evidence += f"; no declared location for: {', '.join(missing_roles)}"
    return ReportLine(
        "processing_location",
        "§7",
        "processing in the EU/EEA; outside it only with a GDPR safeguard",
        evidence,
        not bad and not missing_roles,
        details,
    )


def exports_expire_line(ex: ExportsEvidence) -> ReportLine:
    """Access exports hold everything about a person: they expire, and only their owner reads them."""
    private = ex.not_private == 0 and ex.directory_private
    if private:
        access = "readable by their owner only"
    else:
        access = f"{ex.not_private} file(s) readable by others" + ("" if ex.directory_private else ", directory open")
    return ReportLine(
        "exports_expire",
        "§9, §8",
        f"access exports expire after {ex.retention_days} d and are private to their owner",
        f"{ex.held} export file(s) held, {ex.past_expiry} older than {ex.retention_days} d; {access}",
        ex.past_expiry == 0 and private,
    )


def personal_access_lines(access: AccessEvidence) -> tuple[ReportLine, ...]:
    users = sum(access.users_by_role.values())
    roles = ", ".join(f"{role} {n}" for role, n in sorted(access.users_by_role.items()) if n)
    log_evidence = (
        "no access log yet"
        if access.log_entries is None
        else f"{access.log_entries} logged requests, {access.log_accepted} queries run by {access.log_users} user(s), "
        f"last {access.last_access or '-'}; "
        + ("file readable by its owner only" if access.log_private else "file readable by others")
    )
    return (
        ReportLine(
            "no_anonymous_access",
            "§13",
            "the register is reached only with a personal username and password (no anonymous access)",
            access.anonymous_probe,
            access.anonymous_refused,
        ),
        ReportLine(
            "personal_users",
            "§13",
            "staff whose work needs it have personal users with a role (analyst, dpo, pipeline)",
            f"{users} personal user(s): {roles}" if users else "no personal users: `records users add NAME --role R`",
            users > 0,
        ),
        ReportLine(
            "access_log",
            "§13",
            "every query of the register is logged: who, when, which tables, how many rows",
            log_evidence,
            access.log_accepted > 0 and access.log_private,
        ),
    )
