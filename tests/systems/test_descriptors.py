"""System descriptors: each part at the place the package layout gives it, and nothing a package lacks."""

from __future__ import annotations

import pytest

from integrations import systems
from integrations.systems.spec import SystemDescriptor


def test_a_descriptor_names_its_parts_by_the_package_layout() -> None:
    # given a kind whose package has every optional module
    spec = SystemDescriptor(kind="finops", connector_class="FinOpsConnector", modules=("inbound", "poll", "keys"))
    # then each part is the conventional module of integrations/systems/<kind>/
    assert spec.connector == "integrations.systems.finops.connector.FinOpsConnector"
    assert spec.inbound == "integrations.systems.finops.inbound.FORMAT"
    assert spec.poller == "integrations.systems.finops.poll.read_changes"
    assert spec.keys == "integrations.systems.finops.keys"


def test_a_module_the_package_does_not_list_is_no_part_of_it() -> None:
    spec = SystemDescriptor(kind="ax2012", connector_class="Ax2012Connector", modules=("poll",))
    assert (spec.inbound, spec.keys) == ("", "")
    assert systems.inbound_format("ax2012") is None
    assert "ax2012" in systems.pollable_kinds()


def test_an_unknown_module_name_is_refused() -> None:
    with pytest.raises(ValueError, match="no such module pol"):
        SystemDescriptor(kind="ax2012", connector_class="Ax2012Connector", modules=("pol",))


def test_every_registered_part_loads() -> None:
    for spec in systems.descriptors():
        assert systems.connector_class(spec.kind).kind == spec.kind
        assert (systems.inbound_format(spec.kind) is not None) == bool(spec.inbound)
        assert (systems.poller(spec.kind) is not None) == bool(spec.poller)
        assert systems.canonical_key(spec.kind, "") == ""
