"""The compliance report as one self-contained HTML page: inline CSS and inline SVG charts,
no script, no font, no image and no link to anything outside the file, so a DPO can open
it from a mail attachment or a USB stick without a server or a network."""

from __future__ import annotations

from html import escape

from retention_jobs.linger import format_ms
from retention_jobs.report import Report
from retention_jobs.report_evidence import ReportLine
from retention_jobs.svg_charts import BAD_COLOUR, MUTED_COLOUR, OK_COLOUR, Bar, bar_chart, column_chart

_CSS = """
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; color: #1f2933;
       margin: 24px auto; max-width: 1120px; padding: 0 16px; }
h1 { font-size: 24px; margin-bottom: 4px; } h2 { font-size: 18px; margin-top: 32px; }
.meta { color: #52606d; margin: 0 0 12px; }
.summary { font-size: 16px; font-weight: 600; padding: 8px 12px; border-radius: 6px; display: inline-block; }
.summary.pass { background: #e3f4e8; color: #1e7b34; } .summary.fail { background: #fbe4e2; color: #a61b1b; }
table { border-collapse: collapse; width: 100%; } th, td { text-align: left; vertical-align: top;
       padding: 6px 8px; border-bottom: 1px solid #e4e7eb; }
th { background: #f5f7fa; font-weight: 600; }
.badge { display: inline-block; min-width: 40px; text-align: center; border-radius: 4px; padding: 1px 6px;
         font-weight: 700; font-size: 12px; }
.badge.pass { background: #1e7b34; color: #fff; } .badge.fail { background: #c0392b; color: #fff; }
ul.details { margin: 4px 0 0; padding-left: 18px; color: #52606d; font-size: 12px; }
.charts { display: flex; flex-wrap: wrap; gap: 12px; }
svg.chart { background: #fff; border: 1px solid #e4e7eb; border-radius: 6px; }
svg .chart-title { font-size: 13px; font-weight: 600; fill: #1f2933; }
svg .tick { font-size: 10px; fill: #52606d; } svg .value { font-size: 10px; fill: #1f2933; }
svg .axis-title { font-size: 11px; fill: #52606d; } svg .marker-label { font-size: 11px; font-weight: 600; }
svg .grid { stroke: #eef0f3; } svg .axis { stroke: #9aa5b1; }
.legend span { display: inline-block; width: 10px; height: 10px; margin: 0 4px 0 12px; }
footer { margin-top: 32px; color: #52606d; font-size: 12px; }
"""


def render_html(report: Report) -> str:
    policy, ev = report.policy, report.evidence
    passed = sum(1 for line in report.lines if line.passed)
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>Compliance report {escape(report.generated_at.strftime('%Y-%m-%d %H:%M UTC'))}</title>",
        f"<style>{_CSS}</style></head><body>",
        "<h1>Compliance report: customer-service records</h1>",
        f'<p class="meta">{escape(policy.notice.controller)} · privacy contact {escape(policy.notice.contact)} · '
        f"generated {escape(report.generated_at.strftime('%Y-%m-%d %H:%M:%S UTC'))} · evidence from "
        f"{escape(report.storage)} and Kafka</p>",
        f'<p class="summary {"pass" if report.passed else "fail"}">{passed} of {len(report.lines)} commitments pass'
        f"{'' if report.passed else ': ' + str(len(report.lines) - passed) + ' fail'}</p>",
        "<h2>Commitments of the privacy notice</h2>",
        '<table class="lines"><thead><tr><th>status</th><th>notice</th><th>commitment</th><th>live evidence</th>'
        "</tr></thead><tbody>",
        *(_line_row(line) for line in report.lines),
        "</tbody></table>",
        "<h2>Age of stored records against their retention limit</h2>",
        '<p class="legend"><span style="background:' + OK_COLOUR + '"></span>within the limit'
        '<span style="background:' + BAD_COLOUR + '"></span>past the limit (must be empty)</p>',
        '<div class="charts">',
        *(_age_chart(report, record_type) for record_type in policy.records if record_type in ev.ages),
        "</div>",
        "<h2>Data-subject requests</h2>",
        _dsr_table(report),
        '<div class="charts">',
        _latency_chart(report),
        "</div>",
        "<h2>Kafka: how long an erased subject's data can linger</h2>",
        _kafka_section(report),
        "<footer>Linger model: delete-policy topics keep a record up to retention.ms + segment.ms; compacted "
        "topics drop an erased value within max.compaction.lag.ms + segment.ms of its tombstone, which itself "
        "(a subject key only) stays delete.retention.ms longer. Ages and erasure survivors count every stored "
        "part; other counts read deduplicated rows (FINAL). Produced by <code>records report --html</code>.</footer>",
        "</body></html>",
    ]
    return "\n".join(parts)


def _line_row(line: ReportLine) -> str:
    details = (
        '<ul class="details">' + "".join(f"<li>{escape(d)}</li>" for d in line.details) + "</ul>"
        if line.details
        else ""
    )
    return (
        f'<tr class="line {line.status}" data-id="{escape(line.id)}"><td><span class="badge {line.status}">'
        f"{line.status.upper()}</span></td><td>{escape(line.notice)}</td><td>{escape(line.commitment)}</td>"
        f"<td>{escape(line.evidence)}{details}</td></tr>"
    )


def _age_chart(report: Report, record_type: str) -> str:
    ages = report.evidence.ages[record_type]
    limit = report.policy.record(record_type).retention_days
    bars = [
        Bar(
            label=f"{i * ages.bin_days}",
            value=n,
            colour=BAD_COLOUR if i * ages.bin_days >= limit else OK_COLOUR,
        )
        for i, n in enumerate(ages.histogram)
    ]
    oldest = f"oldest {ages.oldest_age_days:.1f} d" if ages.oldest_age_days is not None else "empty"
    return column_chart(
        title=f"{record_type}: {ages.rows:,} rows, {oldest}",
        bars=bars,
        marker_at=limit / ages.bin_days,
        marker_label=f"limit {limit} d",
        x_title=f"age in days (bars of {ages.bin_days} d)",
        y_title="rows",
        width=540,
        css_class=f"chart age-chart age-{record_type}",
    )


def _latency_label(seconds: int) -> str:
    return format_ms(seconds * 1000).replace(" ", "\u00a0")


def _latency_chart(report: Report) -> str:
    ev = report.evidence
    edges = ev.erasure_latency_edges_s
    labels = [f"≤{_latency_label(e)}" for e in edges] + [f">{_latency_label(edges[-1])}"]
    bars = [
        Bar(label=label, value=n, colour=BAD_COLOUR if i == len(edges) else OK_COLOUR)
        for i, (label, n) in enumerate(zip(labels, ev.erasure_latency_histogram, strict=True))
    ]
    total = sum(ev.erasure_latency_histogram)
    return column_chart(
        title=f"Erasure latency, request to receipt ({total} completed erasure(s))",
        bars=bars,
        marker_at=len(edges),
        marker_label=f"bound {format_ms(int(report.policy.erasure_max_linger.total_seconds() * 1000))}",
        x_title="time from the DPO's request to the completed receipt",
        y_title="requests",
        width=640,
        css_class="chart latency-chart",
    )


def _dsr_table(report: Report) -> str:
    rows = [
        f"<tr><td>{escape(s.request_type)}</td><td>{s.total}</td>"
        f"<td>{escape(', '.join(f'{k} {v}' for k, v in sorted(s.by_status.items())))}</td>"
        f"<td>{_seconds(s.p50_s)}</td><td>{_seconds(s.p95_s)}</td><td>{_seconds(s.max_s)}</td></tr>"
        for s in report.evidence.dsr
    ]
    if not rows:
        rows = ['<tr><td colspan="6">no data-subject request received yet</td></tr>']
    return (
        '<table class="dsr"><thead><tr><th>request type</th><th>requests</th><th>outcome</th>'
        "<th>latency p50</th><th>p95</th><th>max</th></tr></thead><tbody>" + "".join(rows) + "</tbody></table>"
    )


def _seconds(value: float | None) -> str:
    return "-" if value is None else escape(format_ms(int(value * 1000)))


def _kafka_section(report: Report) -> str:
    kafka = report.evidence.kafka
    if kafka.error:
        return f'<p class="summary fail">Kafka evidence unknown: {escape(kafka.error)}</p>'
    bound_ms = int(report.policy.erasure_max_linger.total_seconds() * 1000)
    day = 86_400_000
    bars = []
    for t in kafka.topics:
        if t.linger is None:
            bars.append(Bar(t.name, 0, BAD_COLOUR, "missing"))
            continue
        over = t.linger.exceeds(bound_ms)
        colour = MUTED_COLOUR if not t.personal_data else BAD_COLOUR if over else OK_COLOUR
        note = format_ms(t.linger.data_ms) + ("" if t.personal_data else " (no personal data)")
        value = None if t.linger.data_ms is None else t.linger.data_ms / day
        bars.append(Bar(t.name, value, colour, note))
    chart = bar_chart(
        title="Worst-case linger of an erased subject's data per topic",
        bars=bars,
        marker=bound_ms / day,
        marker_label=f"policy bound {format_ms(bound_ms)}",
        unit="d",
        css_class="chart linger-chart",
    )
    rows = "".join(
        f"<tr><td>{escape(t.name)}</td><td>{'yes' if t.personal_data else 'no'}</td>"
        f"<td>{escape(format_ms(t.linger.data_ms)) if t.linger else 'missing'}</td>"
        f"<td>{escape(format_ms(t.linger.tombstone_ms)) if t.linger and t.linger.tombstone_ms else '-'}</td>"
        f"<td>{escape(t.linger.basis) if t.linger else '-'}</td>"
        f"<td>{escape('; '.join(t.drift)) if t.drift else ('missing' if not t.exists else 'as specified')}</td></tr>"
        for t in kafka.topics
    )
    table = (
        '<table class="topics"><thead><tr><th>topic</th><th>personal data</th><th>data linger</th>'
        "<th>tombstone gone after</th><th>model</th><th>configuration</th></tr></thead><tbody>"
        + rows
        + "</tbody></table>"
    )
    return f'<div class="charts">{chart}</div>{table}'
