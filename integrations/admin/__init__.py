"""The operator console, one module per area; importing them registers the ModelAdmins."""

from integrations.admin import flows, messages, systems  # noqa: F401
