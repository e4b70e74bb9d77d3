from django.urls import path

from sandbox.ax2012.control import DocumentFiltersApi
from sandbox.ax2012.soap import port_view

urlpatterns = [
    path("MicrosoftDynamicsAXAif60/<str:port>/xppservice.svc", port_view, name="ax2012-port"),
    path("control/document-filters/<str:service>", DocumentFiltersApi.as_view(), name="ax2012-document-filters"),
]
