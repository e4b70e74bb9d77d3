"""What the Flow and System consoles share: their rows with state and backlog, and the pause and resume actions.

Both read integrations.selectors.overview and call integrations.pipeline.pause, as the operator API
does; only the selectors, the noun and the wording differ.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from django.contrib import admin
from django.contrib.auth import get_permission_codename
from django.db.models import QuerySet
from django.http import HttpRequest
from django.utils.html import format_html

from integrations.admin import common
from integrations.selectors import overview

Action = Callable[[admin.ModelAdmin, HttpRequest, QuerySet[Any]], None]

# Per model: the changelist's rows with their backlog, and one row's (state, why).
_OVERVIEW = {
    "flow": (overview.flows_with_state, overview.flow_state),
    "system": (overview.systems_with_state, overview.system_state),
}
# Per noun: what pausing does, what resuming does (both in the action's description), what a pause holds.
_WORDING = {
    "flow": ("accept and hold events", "deliver what was held, oldest first", "their events are accepted and held"),
    "system": (
        "hold every flow to and from them",
        "deliver what was held",
        "events to and from them are accepted and held",
    ),
}


class PausableAdminMixin(admin.ModelAdmin):
    """For the admin of a PausableModel (Flow, System): the name, state and waiting columns, the pause permission."""

    def get_queryset(self, request: HttpRequest) -> QuerySet[Any]:
        with_state, _ = _OVERVIEW[self.opts.model_name]
        return with_state(super().get_queryset(request))

    def has_pause_permission(self, request: HttpRequest) -> bool:
        # Pausing is running the hub, not configuring it: operators (change_message) and engineers.
        change = f"{self.opts.app_label}.{get_permission_codename('change', self.opts)}"
        return request.user.has_perm("integrations.change_message") or request.user.has_perm(change)

    @admin.display(description="name", ordering="name")
    def title(self, obj: Any) -> str:
        return format_html("<span class='icb-flow' title='{}'>{}</span>", obj.name, obj.name)

    @admin.display(description="state")
    def state_chip(self, obj: Any) -> str:
        _, state = _OVERVIEW[self.opts.model_name]
        return common.state_chip(*state(obj))

    @admin.display(description="waiting", ordering="backlog_n")
    def waiting(self, obj: Any) -> str:
        if obj.is_held and obj.backlog_n:
            return format_html("<span class='icb-held'>{} held</span>", obj.backlog_n)
        return str(obj.backlog_n)


def pause_actions(noun: str, pause_one: Callable[..., bool], resume_one: Callable[..., int]) -> tuple[Action, Action]:
    """The actions pause_<noun>s and resume_<noun>s, calling pause_one / resume_one for each selected object.

    The services take their object by its noun (pause.flow_pause(flow=…)); resume counts what it released.
    """
    pausing, resuming, held = _WORDING[noun]

    @admin.action(description=f"Pause selected {noun}s ({pausing})", permissions=["pause"])
    def pause_selected(model_admin: admin.ModelAdmin, request: HttpRequest, queryset: QuerySet[Any]) -> None:
        count = sum(pause_one(**{noun: obj}, actor=request.user, reason="console") for obj in queryset)
        model_admin.message_user(request, f"Paused {count} {noun}(s): {held}.")

    @admin.action(description=f"Resume selected {noun}s ({resuming})", permissions=["pause"])
    def resume_selected(model_admin: admin.ModelAdmin, request: HttpRequest, queryset: QuerySet[Any]) -> None:
        paused = list(queryset.filter(paused_at__isnull=False))
        released = sum(resume_one(**{noun: obj}, actor=request.user, reason="console") for obj in paused)
        model_admin.message_user(request, f"Resumed {len(paused)} {noun}(s); {released} held message(s) released.")

    pause_selected.__name__, resume_selected.__name__ = f"pause_{noun}s", f"resume_{noun}s"
    return pause_selected, resume_selected
