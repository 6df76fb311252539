"""The CarePlan narrative: a human summary of the plan and its progress, regenerated on change.

Our narrative is recognisable by its outer div's class (the R4 xhtml rules allow `class`, not
data-* attributes). A narrative without it was written by a client and is kept untouched.
"""
from __future__ import annotations

from html import escape

from .canonical import is_ipt_url
from .progress import PlanProgress
from .protocols import careplan_format, protocol_for_careplan

GENERATED_CLASS = "ipt-fhir-generated"
XHTML_NS = "http://www.w3.org/1999/xhtml"

PROBLEM_AREA_LABELS = {
    "grief": "Grief", "role-dispute": "Role dispute", "role-transition": "Role transition",
    "interpersonal-deficits": "Interpersonal deficits", "adjustment-difficulties": "Adjustment difficulties",
}
PHASE_LABELS = {"initial": "initial", "middle": "middle", "termination": "termination", "maintenance": "maintenance"}


def is_generated_by_us(text: dict | None) -> bool:
    if not text or text.get("status") != "generated":
        return False
    div = text.get("div") or ""
    head = div[: div.find(">") + 1]
    return f'class="{GENERATED_CLASS}"' in head


def careplan_narrative(careplan: dict, progress: PlanProgress | None = None) -> dict:
    """Narrative {status: generated, div} for `careplan`, with progress figures when given."""
    protocol = protocol_for_careplan(careplan)
    period = careplan.get("period") or {}
    rows: list[tuple[str, str]] = []
    rows.append(("Status", f"{careplan.get('status', 'unknown')} ({careplan.get('intent', 'plan')})"))
    if careplan.get("instantiatesCanonical") and any(is_ipt_url(u, "PlanDefinition", protocol.id)
                                                     for u in careplan["instantiatesCanonical"]):
        rows.append(("Protocol", protocol.title))
    fmt = careplan_format(careplan)
    if fmt:
        rows.append(("Format", fmt.replace("-", " ")))
    if period:
        rows.append(("Period", f"{period.get('start', '?')} to {period.get('end', 'open')}"))
    subject = (careplan.get("subject") or {})
    if subject.get("display"):
        rows.append(("Patient", subject["display"]))
    if progress is not None:
        areas = sorted({PROBLEM_AREA_LABELS.get(a.code, a.display or a.code) for a in progress.problem_areas.values()})
        rows.append(("Problem areas", ", ".join(areas) if areas else "not yet chosen"))
        rows.append(("Sessions", f"{progress.sessions_attended} attended of {progress.sessions_planned} planned, "
                                 f"{progress.sessions_missed} missed, {progress.sessions_remaining} remaining"))
        rows.append(("Current phase", PHASE_LABELS.get(progress.current_phase, progress.current_phase)))
        baseline, latest = progress.phq9_baseline, progress.phq9_latest
        if baseline is not None:
            text = f"baseline {_num(baseline.value)} ({baseline.date[:10]})"
            if progress.phq9_change is not None:
                text += f", latest {_num(latest.value)} ({latest.date[:10]})"
                if progress.phq9_remission:
                    text += ", in remission"
                elif progress.phq9_response:
                    text += ", responding"
            rows.append(("PHQ-9", text))
        if progress.goals:
            goals = [f"{g.description or 'goal'}: {g.achievement or g.lifecycle or 'unknown'}"
                     for _, g in sorted(progress.goals.items())]
            rows.append(("Goals", "; ".join(goals)))
        nxt = progress.next_session
        if nxt:
            entry = nxt[1]
            label = f"session {entry.number}, " if entry.number else ""
            rows.append(("Next session", f"{label}{(entry.start or '')[:10]}"))
    title = careplan.get("title") or "Interpersonal psychotherapy care plan"
    body = "".join(f"<tr><th>{escape(k)}</th><td>{escape(v)}</td></tr>" for k, v in rows)
    div = (f'<div xmlns="{XHTML_NS}" class="{GENERATED_CLASS}"><p><b>{escape(title)}</b></p>'
           f"<table><tbody>{body}</tbody></table></div>")
    return {"status": "generated", "div": div}


def with_narrative(careplan: dict, progress: PlanProgress | None = None) -> dict:
    """`careplan` with our narrative, unless the client wrote its own; the same object if unchanged."""
    current = careplan.get("text")
    if current and not is_generated_by_us(current):
        return careplan
    text = careplan_narrative(careplan, progress)
    if current == text:
        return careplan
    return {**careplan, "text": text}


def _num(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else str(value)
