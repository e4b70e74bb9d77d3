"""Control API of the F&O emulator's data management: change tracking of one data entity.

GET / PUT / DELETE /sandbox/finops/control/change-tracking/<Entity>, as an administrator selects Change
tracking on the entity in Data management > Data entities ("Enable change tracking for entities"). PUT
enables it (the emulator tracks every field of the entity, "Enable entire entity"), DELETE disables it.
Same permissions as the faults API (FaultSettings model perms).
"""

from __future__ import annotations

from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from sandbox.control import FaultSettingsPerms
from sandbox.finops.model import ENTITIES
from sandbox.finops.packages import change_tracking, change_tracking_enabled


class ChangeTrackingApi(APIView):
    permission_classes = [FaultSettingsPerms]

    def _unknown(self, entity: str) -> Response | None:
        if entity not in ENTITIES:
            return Response({"error": f"no data entity '{entity}'", "field": "entity"}, status=404)
        return None

    def get(self, request: Request, entity: str) -> Response:
        return self._unknown(entity) or Response({"entity": entity, "enabled": change_tracking_enabled(entity)})

    def put(self, request: Request, entity: str) -> Response:
        if unknown := self._unknown(entity):
            return unknown
        change_tracking(entity, enabled=True)
        return Response({"entity": entity, "enabled": True})

    def delete(self, request: Request, entity: str) -> Response:
        if unknown := self._unknown(entity):
            return unknown
        change_tracking(entity, enabled=False)
        return Response(status=204)
