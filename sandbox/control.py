"""Control API of the emulators: set faults, reset data. Needs the FaultSettings model permissions."""

from __future__ import annotations

from rest_framework import serializers
from rest_framework.permissions import BasePermission
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from sandbox.common.faults import FIELDS, clear_faults, faults_for, set_faults
from sandbox.models import FaultSettings
from sandbox.registry import EMULATORS, descriptor


class FaultsSerializer(serializers.ModelSerializer):
    class Meta:
        model = FaultSettings
        fields = list(FIELDS)

    def validate(self, attrs: dict) -> dict:
        for rate in ("error_rate", "throttle_rate"):
            if rate in attrs and not 0 <= attrs[rate] <= 1:
                raise serializers.ValidationError({rate: "must be between 0 and 1"})
        return attrs


class FaultSettingsPerms(BasePermission):
    """Model permissions on FaultSettings (view to read, change to set or clear, delete to reset), not mere staff."""

    needed = {"GET": "view", "HEAD": "view", "OPTIONS": "view", "PUT": "change", "PATCH": "change", "DELETE": "change"}

    def has_permission(self, request: Request, view: object) -> bool:
        action = self.needed.get(request.method, "delete")
        return bool(request.user and request.user.has_perm(f"sandbox.{action}_faultsettings"))


def _unknown(emulator: str) -> Response | None:
    if emulator not in EMULATORS:
        return Response({"error": f"unknown emulator '{emulator}'", "field": "emulator"}, status=404)
    return None


class FaultsApi(APIView):
    permission_classes = [FaultSettingsPerms]

    def get(self, request: Request, emulator: str) -> Response:
        return _unknown(emulator) or Response(FaultsSerializer(faults_for(emulator)).data)

    def put(self, request: Request, emulator: str) -> Response:
        if unknown := _unknown(emulator):
            return unknown
        serializer = FaultsSerializer(data=request.data, partial=True)
        serializer.is_valid(raise_exception=True)
        return Response(FaultsSerializer(set_faults(emulator, **serializer.validated_data)).data)

    def delete(self, request: Request, emulator: str) -> Response:
        if unknown := _unknown(emulator):
            return unknown
        clear_faults(emulator)
        return Response(status=204)


class ResetApi(APIView):
    """Delete the emulator's data and faults; each emulator's descriptor names its reset()."""

    permission_classes = [FaultSettingsPerms]

    def post(self, request: Request, emulator: str) -> Response:
        if unknown := _unknown(emulator):
            return unknown
        clear_faults(emulator)
        descriptor(emulator).reset()
        return Response({"reset": emulator})
