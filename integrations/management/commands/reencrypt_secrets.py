"""Write every stored secret again under the current SECRET_KEY (the last step of a key rotation)."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand
from django.db import transaction

from integrations.models import InboundEndpoint, System


class Command(BaseCommand):
    help = (
        "Re-encrypt System and InboundEndpoint secrets with the current SECRET_KEY (old keys in SECRET_KEY_FALLBACKS)."
    )

    def handle(self, *args: Any, **options: Any) -> None:
        counts = {}
        with transaction.atomic():
            for model in (System, InboundEndpoint):
                rows = list(model.objects.select_for_update().exclude(secret__isnull=True).only("pk", "secret"))
                for row in rows:
                    # Read with any accepted key, written with the first (the current one).
                    row.save(update_fields=["secret"])
                counts[model._meta.verbose_name_plural] = len(rows)
        self.stdout.write(", ".join(f"{count} {name}" for name, count in counts.items()) + " re-encrypted")
