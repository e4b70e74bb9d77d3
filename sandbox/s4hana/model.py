"""The S/4HANA services as their real $metadata describes them: entity sets, keys, typed properties
(sap:creatable/updatable, ConcurrencyMode) and navigation properties (resolved through AssociationSets),
read from the .edmx files in metadata/."""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

from lxml import etree

from sandbox.s4hana.reply import GatewayError

METADATA_DIR = Path(__file__).resolve().parent / "metadata"
EDM = "http://schemas.microsoft.com/ado/2008/09/edm"
SAP = "http://www.sap.com/Protocols/SAPData"
META = "http://schemas.microsoft.com/ado/2007/08/dataservices/metadata"


@dataclass(frozen=True)
class Prop:
    name: str
    type: str
    nullable: bool = True
    max_length: int | None = None
    creatable: bool = True
    updatable: bool = True
    concurrency: bool = False


@dataclass(frozen=True)
class Nav:
    name: str
    target_set: str
    many: bool


@dataclass
class EntitySet:
    name: str
    type_name: str  # qualified: API_SALES_ORDER_SRV.A_SalesOrderType
    keys: list[str]
    props: dict[str, Prop]
    navs: dict[str, Nav] = field(default_factory=dict)
    creatable: bool = True
    updatable: bool = True
    deletable: bool = True

    @property
    def etag_prop(self) -> str | None:
        return next((p.name for p in self.props.values() if p.concurrency), None)


@dataclass
class Service:
    name: str
    namespace: str
    metadata: bytes
    sets: dict[str, EntitySet]

    def entity_set(self, name: str) -> EntitySet:
        found = self.sets.get(name)
        if found is None:
            raise GatewayError(404, "/IWBEP/CM_MGW_RT/020", f"Resource not found for segment '{name}'")
        return found


def _flag(element: etree._Element, name: str) -> bool:
    return element.get(f"{{{SAP}}}{name}", "true") != "false"


@cache
def load_service(name: str) -> Service:
    """The service as its $metadata describes it (parsed once per process)."""
    path = METADATA_DIR / f"{name}.edmx"
    if not path.is_file():
        raise GatewayError(404, "/IWFND/MED/170", f"No service found for namespace '', name '{name}', version '0001'")
    raw = path.read_bytes()
    root = etree.fromstring(raw, etree.XMLParser(resolve_entities=False, no_network=True))
    schema = root.find(f".//{{{EDM}}}Schema")
    namespace = schema.get("Namespace")
    types: dict[str, etree._Element] = {t.get("Name"): t for t in schema.findall(f"{{{EDM}}}EntityType")}
    associations = {a.get("Name"): a for a in schema.findall(f"{{{EDM}}}Association")}
    container = schema.find(f"{{{EDM}}}EntityContainer")
    association_sets = {
        a.get("Association").rsplit(".", 1)[-1]: {e.get("Role"): e.get("EntitySet") for e in a.findall(f"{{{EDM}}}End")}
        for a in container.findall(f"{{{EDM}}}AssociationSet")
    }
    sets: dict[str, EntitySet] = {}
    for element in container.findall(f"{{{EDM}}}EntitySet"):
        type_name = element.get("EntityType")
        entity_type = types[type_name.rsplit(".", 1)[-1]]
        props = {}
        for p in entity_type.findall(f"{{{EDM}}}Property"):
            max_length = p.get("MaxLength")
            props[p.get("Name")] = Prop(
                name=p.get("Name"),
                type=p.get("Type"),
                nullable=p.get("Nullable", "true") != "false",
                max_length=int(max_length) if max_length and max_length.isdigit() else None,
                creatable=_flag(p, "creatable"),
                updatable=_flag(p, "updatable"),
                concurrency=p.get("ConcurrencyMode") == "Fixed",
            )
        navs = {}
        for n in entity_type.findall(f"{{{EDM}}}NavigationProperty"):
            relationship = n.get("Relationship").rsplit(".", 1)[-1]
            target_set = association_sets.get(relationship, {}).get(n.get("ToRole"))
            association = associations.get(relationship)
            if target_set is None or association is None:
                continue
            end = next(e for e in association.findall(f"{{{EDM}}}End") if e.get("Role") == n.get("ToRole"))
            navs[n.get("Name")] = Nav(n.get("Name"), target_set, end.get("Multiplicity") == "*")
        sets[element.get("Name")] = EntitySet(
            name=element.get("Name"),
            type_name=type_name,
            keys=[k.get("Name") for k in entity_type.find(f"{{{EDM}}}Key").findall(f"{{{EDM}}}PropertyRef")],
            props=props,
            navs=navs,
            creatable=_flag(element, "creatable"),
            updatable=_flag(element, "updatable"),
            deletable=_flag(element, "deletable"),
        )
    return Service(name=name, namespace=namespace, metadata=raw, sets=sets)


def available_services() -> list[str]:
    return sorted(p.stem for p in METADATA_DIR.glob("*.edmx"))
