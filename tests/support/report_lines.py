"""Ids of the compliance report's lines that the report tests expect (written out here, not
read from retention_jobs/report.py, so a line that disappears fails the tests)."""

from __future__ import annotations

# The data subject's rights (GDPR articles 15-21, consent withdrawal under article 7(3)) and
# the evidence behind them.
RIGHTS_LINES = frozenset(
    {
        "rights.access",
        "rights.rectification",
        "rights.erasure",
        "rights.restriction",
        "rights.objection",
        "rights.portability",
        "rights.consent_withdrawal",
        "erasure_proof",
        "no_profiling",
    }
)
