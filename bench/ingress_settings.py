"""Settings of the ingress benchmark's server: the hub's own, plus a bare view to compare with."""

from icbridge.settings import *  # noqa: F403

ROOT_URLCONF = "ingress_urls"
