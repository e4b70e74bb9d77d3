"""F&O Data management (DMF) packages: the zip a data project exports and imports, once for connector and emulator.

A package is a zip holding Manifest.xml (the data project: its entities, their data files, in what
order), PackageHeader.xml (what kind of package) and one data file per entity. "The format of a data
package is a compressed file that contains a package manifest, a package header, and any additional
files for the data entities that are included."
https://learn.microsoft.com/dynamics365/fin-ops-core/dev-itpro/data-entities/data-entities-data-packages
The XML follows the DataContract serialization F&O writes (namespace below); the data files are CSV
with a header row (the "CSV" source data format), one row per entity record.
"""

from __future__ import annotations

import csv
import io
import zipfile
from typing import Any
from xml.sax.saxutils import escape

from lxml import etree

NS = "http://schemas.datacontract.org/2004/07/Microsoft.Dynamics.AX.Framework.Tools.DataManagement.Serialization"
MANIFEST, HEADER = "Manifest.xml", "PackageHeader.xml"


class PackageError(ValueError):
    """Not a data package: not a zip, a part missing, a data file the manifest does not name."""


def _data_file(entity: str) -> str:
    return f"{entity}.csv"


def manifest_xml(definition_group: str, entities: list[str]) -> bytes:
    items = "".join(
        "<DataManagementPackageEntityData>"
        f"<DefaultRefreshType>FullPush</DefaultRefreshType><EntityName>{escape(name)}</EntityName>"
        f"<ExecutionUnit>1</ExecutionUnit><LevelInExecutionUnit>1</LevelInExecutionUnit>"
        f"<SequenceInLevel>{n}</SequenceInLevel><SourceFormat>CSV</SourceFormat>"
        f"<SourceFilePath>{escape(_data_file(name))}</SourceFilePath>"
        "</DataManagementPackageEntityData>"
        for n, name in enumerate(entities, start=1)
    )
    return (
        f'<?xml version="1.0" encoding="utf-8"?><DataManagementPackageManifest xmlns="{NS}">'
        f"<DefinitionGroupName>{escape(definition_group)}</DefinitionGroupName>"
        f"<PackageEntityList>{items}</PackageEntityList></DataManagementPackageManifest>"
    ).encode()


def header_xml(description: str = "") -> bytes:
    return (
        f'<?xml version="1.0" encoding="utf-8"?><DataManagementPackageHeader xmlns="{NS}">'
        f"<Description>{escape(description)}</Description>"
        "<ManifestType>Microsoft.Dynamics.AX.Framework.Tools.DataManagement.Serialization.DataManagementPackageManifest"
        "</ManifestType><PackageType>Definition group</PackageType><PackageVersion>2</PackageVersion>"
        "</DataManagementPackageHeader>"
    ).encode()


def _csv(rows: list[dict[str, Any]]) -> bytes:
    columns: list[str] = []
    for row in rows:
        columns += [name for name in row if name not in columns and not name.startswith("@")]
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=columns, extrasaction="ignore", lineterminator="\r\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: "" if v is None else v for k, v in row.items() if k in columns})
    return out.getvalue().encode("utf-8-sig")  # F&O writes CSV with a byte-order mark


def package_build(*, definition_group: str, entities: dict[str, list[dict[str, Any]]], description: str = "") -> bytes:
    """The zip of a data project's entities (name → rows), in the order given."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr(MANIFEST, manifest_xml(definition_group, list(entities)))
        archive.writestr(HEADER, header_xml(description))
        for name, rows in entities.items():
            archive.writestr(_data_file(name), _csv(rows))
    return buffer.getvalue()


def package_read(data: bytes) -> tuple[str, dict[str, list[dict[str, str]]]]:
    """The definition group and each entity's rows (values as text, as CSV has them), in manifest order."""
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
    except zipfile.BadZipFile as exc:
        raise PackageError("the package is not a zip file") from exc
    names = set(archive.namelist())
    for part in (MANIFEST, HEADER):
        if part not in names:
            raise PackageError(f"the package has no {part}")
    try:
        manifest = etree.fromstring(archive.read(MANIFEST), etree.XMLParser(resolve_entities=False, no_network=True))
    except etree.XMLSyntaxError as exc:
        raise PackageError(f"{MANIFEST} is not XML: {exc}") from exc
    group = manifest.findtext(f"{{{NS}}}DefinitionGroupName") or ""
    entities: dict[str, list[dict[str, str]]] = {}
    for item in manifest.iter(f"{{{NS}}}DataManagementPackageEntityData"):
        name = item.findtext(f"{{{NS}}}EntityName") or ""
        path = item.findtext(f"{{{NS}}}SourceFilePath") or ""
        if path not in names:
            raise PackageError(f"{MANIFEST} names {path!r}, which the package does not hold")
        text = archive.read(path).decode("utf-8-sig")
        entities[name] = [dict(row) for row in csv.DictReader(io.StringIO(text))]
    return group, entities
