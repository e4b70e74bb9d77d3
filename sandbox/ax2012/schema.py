"""The AX 2012 AIF document services the sandbox exposes, and their WSDL/XSD documents.

AX 2012 generates a WSDL per integration port (WCF, basicHttpBinding on the AIF HTTP adapter) from the
document classes (Axd*). Those generated parts are not public, so these are self-consistent equivalents:
the same namespaces, element names and message shapes as AIF (…ServiceCreateRequest, EntityKeyList,
QueryCriteria, EntityKeyPage, CallContext header, AifFault), rendered from the DocumentSpec table (documents.toml).
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from pathlib import Path
from xml.sax.saxutils import escape, quoteattr

SPECS_FILE = Path(__file__).resolve().parent / "documents.toml"

NS_SVC = "http://schemas.microsoft.com/dynamics/2008/01/services"
NS_CTX = "http://schemas.microsoft.com/dynamics/2010/01/datacontracts"
NS_EK = "http://schemas.microsoft.com/dynamics/2006/02/documents/EntityKey"
NS_EKL = "http://schemas.microsoft.com/dynamics/2006/02/documents/EntityKeyList"
NS_EKP = "http://schemas.microsoft.com/dynamics/2006/02/documents/EntityKeyPage"
NS_QC = "http://schemas.microsoft.com/dynamics/2006/02/documents/QueryCriteria"
NS_PAGING = "http://schemas.microsoft.com/dynamics/2006/02/documents/DocumentPaging"
NS_FAULT = "http://schemas.microsoft.com/dynamics/2008/01/documents/Fault"
NS_SOAP = "http://schemas.xmlsoap.org/soap/envelope/"


def document_namespace(document: str) -> str:
    return f"http://schemas.microsoft.com/dynamics/2008/01/documents/{document}"


# Operations every document service port exposes here (AX 2012 document service operations).
OPERATIONS = ("create", "read", "find", "findKeys", "update", "delete", "getKeys", "getChangedKeys")

# XSD types a field may declare as "Name:type"; everything else is a string.
FIELD_TYPES = {"decimal": "xs:decimal", "date": "xs:date", "int": "xs:int", "datetime": "xs:dateTime"}


@dataclass(frozen=True)
class Field:
    name: str
    type: str = "string"  # string | decimal | date | int | datetime

    @property
    def xsd_type(self) -> str:
        return FIELD_TYPES.get(self.type, "xs:string")


def _fields(spec: str) -> tuple[Field, ...]:
    out = []
    for item in spec.split():
        name, _, kind = item.partition(":")
        out.append(Field(name, kind or "string"))
    return tuple(out)


@dataclass(frozen=True)
class Reference:
    """A field that must name an existing record of another document in the same company."""

    field: str
    document: str
    label: str  # the related table's label, as AX words the error


@dataclass(frozen=True)
class DocumentSpec:
    service: str  # SalesOrderService
    document: str  # SalesOrder (Axd class name without Axd)
    table: str  # SalesTable: the root data source
    key_field: str  # SalesId
    fields: tuple[Field, ...]
    required: tuple[str, ...] = ()
    line_table: str = ""  # SalesLine
    line_fields: tuple[Field, ...] = ()
    line_required: tuple[str, ...] = ()
    number_prefix: str | None = None  # number sequence for new keys; None: the caller supplies the key
    references: tuple[Reference, ...] = ()
    service_class: str = ""  # the AOT class (CustCustomerService); `service` is its external name
    custom: bool = False  # not one of AX 2012's standard document services

    def field(self, name: str, *, line: bool = False) -> Field | None:
        for f in self.line_fields if line else self.fields:
            if f.name == name:
                return f
        return None


def _load_services() -> dict[str, DocumentSpec]:
    """The document services of documents.toml (data, as the S/4 emulator's $metadata is), by service name."""
    with SPECS_FILE.open("rb") as file:
        documents = tomllib.load(file)["document"]
    specs = []
    for doc in documents:
        specs.append(
            DocumentSpec(
                service=doc["service"],
                document=doc["document"],
                table=doc["table"],
                key_field=doc["key_field"],
                fields=_fields(doc["fields"]),
                required=tuple(doc.get("required", ())),
                line_table=doc.get("line_table", ""),
                line_fields=_fields(doc.get("line_fields", "")),
                line_required=tuple(doc.get("line_required", ())),
                number_prefix=doc.get("number_prefix"),
                references=tuple(Reference(*reference) for reference in doc.get("references", ())),
                service_class=doc.get("service_class", doc["service"]),
                custom=bool(doc.get("custom", False)),
            )
        )
    return {spec.service: spec for spec in specs}


SERVICES: dict[str, DocumentSpec] = _load_services()


def request_element(service: str, operation: str) -> str:
    return f"{service}{operation[0].upper()}{operation[1:]}Request"


def response_element(service: str, operation: str) -> str:
    return f"{service}{operation[0].upper()}{operation[1:]}Response"


# --- XSD documents -----------------------------------------------------------------------------

_XS = 'xmlns:xs="http://www.w3.org/2001/XMLSchema"'


def _schema(target: str, body: str, imports: dict[str, str] | None = None, base_url: str = "") -> str:
    lines = [
        f'<?xml version="1.0" encoding="utf-8"?><xs:schema {_XS} elementFormDefault="qualified" '
        f'targetNamespace="{target}" xmlns:tns="{target}"'
    ]
    for prefix, name in (imports or {}).items():
        lines.append(f' xmlns:{prefix}="{SCHEMAS[name][0]}"')
    lines.append(">")
    for name in (imports or {}).values():
        lines.append(
            f'<xs:import namespace="{SCHEMAS[name][0]}" schemaLocation={quoteattr(f"{base_url}?xsd={name}")}/>'
        )
    lines.append(body)
    lines.append("</xs:schema>")
    return "".join(lines)


def _entity_key_xsd(base_url: str) -> str:
    return _schema(
        NS_EK,
        '<xs:element name="EntityKey" type="tns:EntityKey"/>'
        '<xs:complexType name="EntityKey"><xs:sequence>'
        '<xs:element name="KeyData" type="tns:KeyData"/></xs:sequence></xs:complexType>'
        '<xs:complexType name="KeyData"><xs:sequence>'
        '<xs:element name="KeyField" type="tns:KeyField" maxOccurs="unbounded"/></xs:sequence></xs:complexType>'
        '<xs:complexType name="KeyField"><xs:sequence><xs:element name="Field" type="xs:string"/>'
        '<xs:element name="Value" type="xs:string"/></xs:sequence></xs:complexType>',
    )


def _entity_key_list_xsd(base_url: str) -> str:
    return _schema(
        NS_EKL,
        '<xs:element name="EntityKeyList" type="tns:EntityKeyList"/>'
        '<xs:complexType name="EntityKeyList"><xs:sequence>'
        '<xs:element ref="ek:EntityKey" minOccurs="0" maxOccurs="unbounded"/></xs:sequence></xs:complexType>',
        {"ek": "EntityKey"},
        base_url,
    )


def _entity_key_page_xsd(base_url: str) -> str:
    return _schema(
        NS_EKP,
        '<xs:element name="EntityKeyPage" type="tns:EntityKeyPage"/>'
        '<xs:complexType name="EntityKeyPage"><xs:sequence>'
        '<xs:element ref="ekl:EntityKeyList"/>'
        '<xs:element name="PageStatus" type="tns:PageStatus"/>'
        '<xs:element name="PageStatusContext" type="xs:string" minOccurs="0" nillable="true"/>'
        "</xs:sequence></xs:complexType>"
        '<xs:simpleType name="PageStatus"><xs:restriction base="xs:string">'
        '<xs:enumeration value="Success"/><xs:enumeration value="NoMorePages"/>'
        "</xs:restriction></xs:simpleType>",
        {"ekl": "EntityKeyList"},
        base_url,
    )


def _query_criteria_xsd(base_url: str) -> str:
    operators = "".join(
        f'<xs:enumeration value="{op}"/>'
        for op in ("Equal", "NotEqual", "Greater", "GreaterOrEqual", "Less", "LessOrEqual", "Range")
    )
    return _schema(
        NS_QC,
        '<xs:element name="QueryCriteria" type="tns:QueryCriteria"/>'
        '<xs:complexType name="QueryCriteria"><xs:sequence>'
        '<xs:element name="CriteriaElement" type="tns:CriteriaElement" maxOccurs="unbounded"/>'
        "</xs:sequence></xs:complexType>"
        '<xs:complexType name="CriteriaElement"><xs:sequence>'
        '<xs:element name="DataSourceName" type="xs:string"/><xs:element name="FieldName" type="xs:string"/>'
        '<xs:element name="Operator" type="tns:Operator"/><xs:element name="Value1" type="xs:string"/>'
        '<xs:element name="Value2" type="xs:string" minOccurs="0"/></xs:sequence></xs:complexType>'
        f'<xs:simpleType name="Operator"><xs:restriction base="xs:string">{operators}</xs:restriction></xs:simpleType>',
    )


def _paging_xsd(base_url: str) -> str:
    return _schema(
        NS_PAGING,
        '<xs:element name="DocumentPaging" type="tns:DocumentPaging"/>'
        '<xs:complexType name="DocumentPaging"><xs:sequence>'
        '<xs:element name="NumberOfDocuments" type="xs:int" minOccurs="0"/>'
        '<xs:element name="PageStatusContext" type="xs:string" minOccurs="0" nillable="true"/>'
        "</xs:sequence></xs:complexType>",
    )


def _call_context_xsd(base_url: str) -> str:
    parts = "".join(
        f'<xs:element name="{name}" type="xs:string" minOccurs="0" nillable="true"/>'
        for name in ("Company", "Language", "LogonAsUser", "MessageId", "PartitionKey", "PropertyBag")
    )
    return _schema(
        NS_CTX,
        '<xs:element name="CallContext" type="tns:CallContext"/>'
        f'<xs:complexType name="CallContext"><xs:sequence>{parts}</xs:sequence></xs:complexType>',
    )


def _fault_xsd(base_url: str) -> str:
    def strings(*names: str) -> str:
        return "".join(f'<xs:element name="{n}" type="xs:string" minOccurs="0" nillable="true"/>' for n in names)

    return _schema(
        NS_FAULT,
        '<xs:element name="AifFault" type="tns:AifFault"/>'
        '<xs:complexType name="AifFault"><xs:sequence>'
        f"{strings('CustomDetailXml')}"
        '<xs:element name="FaultMessageListArray" type="tns:ArrayOfFaultMessageList" minOccurs="0" nillable="true"/>'
        '<xs:element name="InfologMessageList" type="tns:ArrayOfInfologMessage" minOccurs="0" nillable="true"/>'
        "</xs:sequence></xs:complexType>"
        '<xs:complexType name="ArrayOfFaultMessageList"><xs:sequence>'
        '<xs:element name="FaultMessageList" type="tns:FaultMessageList" minOccurs="0" maxOccurs="unbounded"/>'
        "</xs:sequence></xs:complexType>"
        '<xs:complexType name="FaultMessageList"><xs:sequence>'
        f"{strings('Document', 'DocumentOperation')}"
        '<xs:element name="FaultMessageArray" type="tns:ArrayOfFaultMessage" minOccurs="0" nillable="true"/>'
        f"{strings('Field', 'Service', 'ServiceOperation', 'ServiceOperationParameter', 'XPath')}"
        "</xs:sequence></xs:complexType>"
        '<xs:complexType name="ArrayOfFaultMessage"><xs:sequence>'
        '<xs:element name="FaultMessage" type="tns:FaultMessage" minOccurs="0" maxOccurs="unbounded"/>'
        "</xs:sequence></xs:complexType>"
        f'<xs:complexType name="FaultMessage"><xs:sequence>{strings("Code", "Message")}</xs:sequence></xs:complexType>'
        '<xs:complexType name="ArrayOfInfologMessage"><xs:sequence>'
        '<xs:element name="InfologMessage" type="tns:InfologMessage" minOccurs="0" maxOccurs="unbounded"/>'
        "</xs:sequence></xs:complexType>"
        '<xs:complexType name="InfologMessage"><xs:sequence>'
        f"{strings('InfologMessageType', 'Message')}</xs:sequence></xs:complexType>",
    )


def _entity_type(name: str, fields: tuple[Field, ...], child: str = "") -> str:
    elements = '<xs:element name="_DocumentHash" type="xs:string" minOccurs="0" nillable="true"/>'
    elements += "".join(
        f'<xs:element name="{f.name}" type="{f.xsd_type}" minOccurs="0" nillable="true"/>' for f in fields
    )
    elements += '<xs:element name="RecId" type="xs:long" minOccurs="0"/>'
    elements += '<xs:element name="RecVersion" type="xs:int" minOccurs="0"/>'
    if child:
        elements += f'<xs:element name="{child}" type="tns:AxdEntity_{child}" minOccurs="0" maxOccurs="unbounded"/>'
    return (
        f'<xs:complexType name="AxdEntity_{name}"><xs:sequence>{elements}</xs:sequence>'
        '<xs:attribute name="class" type="xs:string" use="optional"/>'
        '<xs:attribute name="action" type="tns:AxdEnum_AxdEntityAction" use="optional"/>'
        "</xs:complexType>"
    )


def document_xsd(spec: DocumentSpec) -> str:
    body = (
        f'<xs:element name="{spec.document}" type="tns:Axd{spec.document}"/>'
        f'<xs:complexType name="Axd{spec.document}"><xs:sequence>'
        '<xs:element name="DocPurpose" type="xs:string" minOccurs="0" nillable="true"/>'
        '<xs:element name="SenderId" type="xs:string" minOccurs="0" nillable="true"/>'
        f'<xs:element name="{spec.table}" type="tns:AxdEntity_{spec.table}" minOccurs="0" maxOccurs="unbounded"/>'
        "</xs:sequence></xs:complexType>"
        '<xs:simpleType name="AxdEnum_AxdEntityAction"><xs:restriction base="xs:string">'
        + "".join(f'<xs:enumeration value="{a}"/>' for a in ("create", "update", "replace", "delete"))
        + "</xs:restriction></xs:simpleType>"
        + _entity_type(spec.table, spec.fields, spec.line_table)
    )
    if spec.line_table:
        body += _entity_type(spec.line_table, spec.line_fields)
    return _schema(document_namespace(spec.document), body)


def service_xsd(spec: DocumentSpec, base_url: str) -> str:
    """The request/response wrapper elements of one service's operations."""
    doc = f"doc:{spec.document}"
    shapes = {
        "create": ([doc], ["ekl:EntityKeyList"]),
        "read": (["ekl:EntityKeyList"], [doc]),
        "find": (["qc:QueryCriteria"], [doc]),
        "findKeys": (["qc:QueryCriteria"], ["ekl:EntityKeyList"]),
        "update": (["ekl:EntityKeyList", doc], []),
        "delete": (["ekl:EntityKeyList"], []),
        "getKeys": (["pg:DocumentPaging?"], ["ekp:EntityKeyPage"]),
        "getChangedKeys": (["pg:DocumentPaging?", "ChangedDateTime"], ["ekp:EntityKeyPage"]),
    }
    body = []
    for operation, (inputs, outputs) in shapes.items():
        for element, refs in (
            (request_element(spec.service, operation), inputs),
            (response_element(spec.service, operation), outputs),
        ):
            parts = []
            for ref in refs:
                if ref == "ChangedDateTime":
                    parts.append('<xs:element name="ChangedDateTime" type="xs:dateTime"/>')
                elif ref.endswith("?"):
                    parts.append(f'<xs:element ref="{ref[:-1]}" minOccurs="0"/>')
                else:
                    parts.append(f'<xs:element ref="{ref}"/>')
            body.append(
                f'<xs:element name="{element}"><xs:complexType><xs:sequence>{"".join(parts)}</xs:sequence>'
                "</xs:complexType></xs:element>"
            )
    imports = {
        "doc": spec.document,
        "ekl": "EntityKeyList",
        "ekp": "EntityKeyPage",
        "qc": "QueryCriteria",
        "pg": "DocumentPaging",
    }
    return _schema(NS_SVC, "".join(body), imports, base_url)


# name → (namespace, renderer(base_url)); a document's own schema is added per service.
SCHEMAS: dict[str, tuple[str, object]] = {
    "EntityKey": (NS_EK, _entity_key_xsd),
    "EntityKeyList": (NS_EKL, _entity_key_list_xsd),
    "EntityKeyPage": (NS_EKP, _entity_key_page_xsd),
    "QueryCriteria": (NS_QC, _query_criteria_xsd),
    "DocumentPaging": (NS_PAGING, _paging_xsd),
    "CallContext": (NS_CTX, _call_context_xsd),
    "Fault": (NS_FAULT, _fault_xsd),
}
_COMMON = frozenset(SCHEMAS)
for _spec in SERVICES.values():
    SCHEMAS[_spec.document] = (document_namespace(_spec.document), lambda base_url, s=_spec: document_xsd(s))


def render_xsd(name: str, spec: DocumentSpec, base_url: str) -> str | None:
    """One XSD of the port, as served at ?xsd=<name>; None if the port has no such schema."""
    if name == "Service":
        return service_xsd(spec, base_url)
    if name == spec.document:
        return document_xsd(spec)
    if name in _COMMON:
        return SCHEMAS[name][1](base_url)
    return None


def render_wsdl(spec: DocumentSpec, endpoint: str) -> str:
    """The port's WSDL: types imported from ?xsd=…, one operation per AIF service operation."""
    s = spec.service
    imports = "".join(
        f'<xsd:import schemaLocation={quoteattr(f"{endpoint}?xsd={name}")} namespace="{ns}"/>'
        for name, ns in (("Service", NS_SVC), ("CallContext", NS_CTX), ("Fault", NS_FAULT))
    )
    messages, port_ops, binding_ops = [], [], []
    for op in OPERATIONS:
        req, resp = request_element(s, op), response_element(s, op)
        messages.append(
            f'<wsdl:message name="{req}"><wsdl:part name="parameters" element="tns:{req}"/></wsdl:message>'
            f'<wsdl:message name="{req}_Headers"><wsdl:part name="context" element="ctx:CallContext"/></wsdl:message>'
            f'<wsdl:message name="{resp}"><wsdl:part name="parameters" element="tns:{resp}"/></wsdl:message>'
            f'<wsdl:message name="{s}_{op}_AifFaultFault_FaultMessage">'
            '<wsdl:part name="detail" element="fault:AifFault"/></wsdl:message>'
        )
        port_ops.append(
            f'<wsdl:operation name="{op}"><wsdl:input name="{req}" message="tns:{req}"/>'
            f'<wsdl:output name="{resp}" message="tns:{resp}"/>'
            f'<wsdl:fault name="AifFaultFault" message="tns:{s}_{op}_AifFaultFault_FaultMessage"/></wsdl:operation>'
        )
        binding_ops.append(
            f'<wsdl:operation name="{op}"><soap:operation soapAction="{NS_SVC}/{s}/{op}" style="document"/>'
            f'<wsdl:input name="{req}"><soap:header message="tns:{req}_Headers" part="context" use="literal"/>'
            '<soap:body use="literal"/></wsdl:input>'
            f'<wsdl:output name="{resp}"><soap:body use="literal"/></wsdl:output>'
            '<wsdl:fault name="AifFaultFault"><soap:fault name="AifFaultFault" use="literal"/></wsdl:fault>'
            "</wsdl:operation>"
        )
    return (
        '<?xml version="1.0" encoding="utf-8"?>'
        f'<wsdl:definitions name="{s}" targetNamespace="{NS_SVC}" xmlns:tns="{NS_SVC}" '
        'xmlns:wsdl="http://schemas.xmlsoap.org/wsdl/" xmlns:soap="http://schemas.xmlsoap.org/wsdl/soap/" '
        f'xmlns:xsd="http://www.w3.org/2001/XMLSchema" xmlns:ctx="{NS_CTX}" xmlns:fault="{NS_FAULT}">'
        + (
            f"<wsdl:documentation>Custom document service {s}: not a standard AX 2012 document service."
            "</wsdl:documentation>"
            if spec.custom
            else ""
        )
        + f'<wsdl:types><xsd:schema targetNamespace="{NS_SVC}/Imports">{imports}</xsd:schema></wsdl:types>'
        + "".join(messages)
        + f'<wsdl:portType name="{s}">{"".join(port_ops)}</wsdl:portType>'
        f'<wsdl:binding name="BasicHttpBinding_{s}" type="tns:{s}">'
        '<soap:binding transport="http://schemas.xmlsoap.org/soap/http"/>'
        f"{''.join(binding_ops)}</wsdl:binding>"
        f'<wsdl:service name="RoutingService">'
        f'<wsdl:port name="BasicHttpBinding_{s}" binding="tns:BasicHttpBinding_{s}">'
        f"<soap:address location={quoteattr(endpoint)}/></wsdl:port></wsdl:service>"
        "</wsdl:definitions>"
    )


def xml_text(value: object) -> str:
    return escape(str(value))
