"""How the weekly report reads: the headline figures compared with the week before, their
formats, and the few plain-text lines posted to the webhook and shown atop the report's page."""

from __future__ import annotations

from datetime import date
from typing import Any, NamedTuple


class Change(NamedTuple):
    key: str
    section: str  # "turns" (the week's turns) or "work" (what was done during the week)
    label: str
    kind: str  # count, rate, grade, money, money_small, ms
    better: str  # "up", "down" or "" (neither is better)
    group: str  # pipeline, quality, cost


CHANGES: tuple[Change, ...] = (
    Change("turns", "turns", "Turns logged", "count", "", "pipeline"),
    Change("judged", "turns", "Judged", "count", "", "pipeline"),
    Change("flagged", "turns", "Flagged for review", "count", "", "pipeline"),
    Change("reviews", "work", "Reviews submitted", "count", "", "pipeline"),
    Change("corrected", "work", "Corrected by a reviewer", "count", "", "pipeline"),
    Change("dataset_items", "work", "Added to datasets", "count", "", "pipeline"),
    Change("exports", "work", "Training exports written", "count", "", "pipeline"),
    Change("finetune_done", "work", "Fine-tuning jobs finished", "count", "", "pipeline"),
    Change("finetune_rows", "work", "Rows trained on", "count", "", "pipeline"),
    Change("promoted", "work", "Fine-tuned models promoted", "count", "", "pipeline"),
    Change("judge_pass_rate", "turns", "Judge pass rate", "rate", "up", "quality"),
    Change("review_grade", "turns", "Review grade of the week's answers", "grade", "up", "quality"),
    Change("thumbs_up_rate", "turns", "Thumbs up", "rate", "up", "quality"),
    Change("no_answer_rate", "turns", "No-answer rate", "rate", "down", "quality"),
    Change("escalation_rate", "turns", "Escalation rate", "rate", "down", "quality"),
    Change("error_rate", "turns", "Error rate", "rate", "down", "quality"),
    Change("cost", "turns", "Cost", "money", "down", "cost"),
    Change("cost_per_turn", "turns", "Cost a turn", "money_small", "down", "cost"),
    Change("tokens", "turns", "Tokens", "count", "", "cost"),
    Change("ttft_p50", "turns", "First token p50", "ms", "down", "cost"),
    Change("ttft_p95", "turns", "First token p95", "ms", "down", "cost"),
    Change("total_p50", "turns", "Total latency p50", "ms", "down", "cost"),
    Change("total_p95", "turns", "Total latency p95", "ms", "down", "cost"),
)
GROUPS = (
    ("pipeline", "From logged to shipped"),
    ("quality", "Quality"),
    ("cost", "Cost and latency"),
)


def _ms(value: float) -> str:
    sign = "-" if value < 0 else ""
    value = abs(value)
    if value < 1000:
        return f"{sign}{value:.0f} ms"
    return f"{sign}{value / 1000:.2f} s"


def value_text(kind: str, value: Any) -> str:
    if value is None:
        return "—"
    if kind == "count":
        return f"{int(value):,}"
    if kind == "rate":
        return f"{value * 100:.1f}%"
    if kind == "grade":
        return f"{value:.2f} / 5"
    if kind == "money":
        return f"${value:,.2f}"
    if kind == "money_small":
        return f"${value:.5f}"
    if kind == "ms":
        return _ms(value)
    return str(value)


def delta_text(kind: str, change: dict[str, Any], *, inline: bool = False) -> str:
    """The change from the week before as a person reads it: +12 (+8.0%), -1.5 pts, +120 ms,
    "new" when the week before had none; `inline`: +12, +8.0% (inside parentheses already)."""
    delta, relative = change.get("delta"), change.get("relative")
    if delta is None:
        return "—" if change.get("week") is None else "new"
    if abs(delta) < 1e-12:
        return "no change"
    sign = "+" if delta > 0 else ""
    if kind == "rate":
        return f"{sign}{delta * 100:.1f} pts"
    if kind == "grade":
        return f"{sign}{delta:.2f}"
    if kind == "ms":
        return sign + _ms(delta)
    if kind == "money":
        text = f"{sign}${delta:,.2f}" if delta >= 0 else f"-${-delta:,.2f}"
    elif kind == "money_small":
        text = f"{sign}${delta:.5f}" if delta >= 0 else f"-${-delta:.5f}"
    else:
        text = f"{sign}{int(delta):,}"
    if relative is not None:
        percent = f"{'+' if relative > 0 else ''}{relative * 100:.1f}%"
        text += f", {percent}" if inline else f" ({percent})"
    return text


def direction(better: str, change: dict[str, Any]) -> str:
    """'good', 'bad' or '' for a change, given which way is better."""
    delta = change.get("delta")
    if not better or delta is None or abs(delta) < 1e-12:
        return ""
    return "good" if (delta > 0) == (better == "up") else "bad"


def rows(figures: dict[str, Any], group: str) -> list[dict[str, Any]]:
    """The report page's table rows of one group."""
    out = []
    for c in CHANGES:
        if c.group != group:
            continue
        change = figures.get("changes", {}).get(c.key, {})
        out.append(
            {
                "label": c.label,
                "week": value_text(c.kind, change.get("week")),
                "previous": value_text(c.kind, change.get("previous")),
                "delta": delta_text(c.kind, change),
                "direction": direction(c.better, change),
            }
        )
    return out


# The columns of the list of weeks.
HEADLINE = ("turns", "judge_pass_rate", "review_grade", "thumbs_up_rate", "cost", "total_p95")


def headline(figures: dict[str, Any]) -> list[dict[str, Any]]:
    """The few figures the list of weeks shows for one report, each with its change."""
    wanted = {key: i for i, key in enumerate(HEADLINE)}
    found = [(c, figures.get("changes", {}).get(c.key, {})) for c in CHANGES if c.key in wanted]
    found.sort(key=lambda pair: wanted[pair[0].key])
    return [
        {
            "label": c.label,
            "week": value_text(c.kind, change.get("week")),
            "delta": delta_text(c.kind, change),
            "direction": direction(c.better, change),
        }
        for c, change in found
    ]


def _line(figures: dict[str, Any], keys: tuple[str, ...]) -> str:
    kinds = {c.key: c for c in CHANGES}
    parts: list[str] = []
    for key in keys:
        c, change = kinds[key], figures["changes"].get(key, {})
        parts.append(
            f"{c.label.lower() if parts else c.label} {value_text(c.kind, change.get('week'))}"
            f" ({delta_text(c.kind, change, inline=True)})"
        )
    return ", ".join(parts) + "."


def summary_text(figures: dict[str, Any]) -> str:
    """A few plain lines: the webhook's text, and the summary atop the page."""
    start, end = date.fromisoformat(figures["week_start"]), date.fromisoformat(figures["week_end"])
    year, week, _ = start.isocalendar()
    lines = [
        f"Weekly report {year}-W{week:02d}, {start:%-d %b} to {end:%-d %b %Y} "
        f"({figures['time_zone']}); changes are against the week before."
    ]
    if not figures["turns"]["turns"]:
        lines.append("No production turns this week.")
    else:
        lines.append(_line(figures, ("turns", "judged", "flagged")))
    lines.append(
        _line(
            figures,
            ("reviews", "corrected", "dataset_items", "finetune_done", "finetune_rows", "promoted"),
        )
    )
    work = figures["work"]
    if work["promoted_endpoints"]:
        lines.append("Promoted to the default: " + ", ".join(work["promoted_endpoints"]) + ".")
    lines.append(_line(figures, ("judge_pass_rate", "review_grade", "thumbs_up_rate")))
    lines.append(_line(figures, ("cost", "total_p95", "ttft_p95")))
    judges = [j for j in figures.get("judges", []) if j.get("kappa") is not None]
    if judges:
        lines.append(
            "Judges against human reviews: "
            + "; ".join(f"{j['name']} κ {j['kappa']:.2f} on {j['pairs']}" for j in judges)
            + "."
        )
    drifting = [
        d
        for d in figures.get("drift", [])
        if d["collection_id"] is not None and d["similarity_delta"] is not None
    ]
    if drifting:
        lines.append(
            "Retrieval, top-passage similarity: "
            + "; ".join(f"{d['name']} {d['similarity_delta']:+.3f}" for d in drifting)
            + "."
        )
    return "\n".join(lines)
