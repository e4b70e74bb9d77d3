"""Console pages outside the ModelAdmins: a business chain, and installing the scenario templates. Staff only."""

from __future__ import annotations

from django.conf import settings
from django.contrib import admin, messages
from django.contrib.admin.views.decorators import staff_member_required
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import render
from django.urls import path, reverse
from django.views.decorators.http import require_http_methods

from integrations.scenarios.install import templates_install
from integrations.scenarios.templates import TEMPLATES, TemplateError, raw
from integrations.selectors import chains


@staff_member_required
def chain_page(request: HttpRequest, correlation_id: str) -> HttpResponse:
    try:
        chain = chains.chain_for(correlation_id)
    except chains.ChainNotFound as exc:
        raise Http404(str(exc)) from exc
    context = {
        **admin.site.each_context(request),
        "title": f"Business chain {correlation_id}",
        "chain": chain,
    }
    return render(request, "integrations/chain.html", context)


def install_templates_action(
    request: HttpRequest, names: list[str], base_url: str = "", update: bool = False, sandbox: bool = True
) -> int:
    """The console's install action: install each template, tell the operator what happened; returns how many changed.

    Usable from any admin action or view: `install_templates_action(request, ["intercompany"])`.
    """
    changed = 0
    for name in names:
        try:
            report = templates_install(
                name=name,
                base_url=base_url or settings.PUBLIC_URL,
                actor=request.user,
                update=update,
                sandbox=sandbox,
            )
        except TemplateError as exc:
            messages.error(request, str(exc))
            continue
        changed += report.changed
        messages.add_message(request, messages.SUCCESS if report.changed else messages.INFO, report.summary())
    return changed


@staff_member_required
@require_http_methods(["GET", "POST"])
def templates_page(request: HttpRequest) -> HttpResponse:
    if request.method == "POST":
        if not request.user.has_perm("integrations.add_flow"):
            messages.error(request, "You may not install templates: it needs the permission to add flows.")
        else:
            names = request.POST.getlist("template")
            unknown = [name for name in names if name not in TEMPLATES]
            if unknown or not names:
                messages.error(request, f"Choose known templates; got {', '.join(unknown) or 'none'}.")
            else:
                install_templates_action(
                    request,
                    names,
                    base_url=request.POST.get("base_url", "").strip(),
                    update="update" in request.POST,
                    sandbox="sandbox" in request.POST,
                )
        return HttpResponseRedirect(reverse("scenario-templates"))
    templates = [
        {
            "name": name,
            "title": raw(name).get("title", name),
            "description": raw(name).get("description", ""),
            "flows": [flow["name"] for flow in raw(name)["flows"]],
        }
        for name in TEMPLATES
    ]
    context = {
        **admin.site.each_context(request),
        "title": "Scenario templates",
        "templates": templates,
        "base_url": settings.PUBLIC_URL,
    }
    return render(request, "integrations/templates.html", context)


# Mounted before the admin site in icbridge/urls.py: /admin/chain/<id>/ and /admin/scenario-templates/.
urlpatterns = [
    path("chain/<str:correlation_id>/", chain_page, name="scenario-chain"),
    path("scenario-templates/", templates_page, name="scenario-templates"),
]
