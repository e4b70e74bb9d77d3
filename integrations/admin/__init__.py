"""The operator console, one module per area; importing them registers the ModelAdmins."""

from django.contrib import admin

from integrations.admin import flows, loads, messages, records, systems  # noqa: F401

# The console is icbridge's, not "Django administration".
admin.site.site_header = "icbridge operator console"
admin.site.site_title = "icbridge"
admin.site.index_title = "Operations"
# The left-hand list of every table takes a fifth of a 1440 px screen from the lists; the home page
# links what an operator needs, and "All records and settings" keeps the rest one click away.
admin.site.enable_nav_sidebar = False
