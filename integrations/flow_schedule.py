"""The rule tying a flow's trigger to its schedule, checked by Flow.clean, the console's form and the API.

Kept apart from integrations.models for that module's size; it imports nothing of the hub.
"""

from __future__ import annotations

SCHEDULE = "schedule"


def schedule_problem(*, trigger: str, has_schedule: bool) -> str:
    """What is wrong with this trigger and schedule together, naming the field; "" when they fit."""
    if trigger == SCHEDULE and not has_schedule:
        return "schedule: required when the trigger is 'schedule' (pick a crontab, or add one with +)"
    if trigger != SCHEDULE and has_schedule:
        return f"schedule: only a flow with trigger 'schedule' runs on one; this flow's trigger is '{trigger}'"
    return ""
