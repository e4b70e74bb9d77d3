from django.urls import path

from sandbox.azuread.discovery import instance_discovery, jwks, openid_configuration
from sandbox.azuread.tokens import token

urlpatterns = [
    path("common/discovery/instance", instance_discovery, name="azuread-instance-discovery"),
    path("<str:tenant>/v2.0/.well-known/openid-configuration", openid_configuration, name="azuread-openid"),
    path("<str:tenant>/discovery/v2.0/keys", jwks, name="azuread-jwks"),
    path("<str:tenant>/oauth2/v2.0/token", token, name="azuread-token"),
]
