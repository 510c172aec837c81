"""ARNs of the compatible API: the namespace sits in the region field.

``arn:kiu:rekognition:<namespace>:000000000000:project/<project>/version/<name>/<ms>``
names a ProjectVersion and ``arn:kiu:rekognition:<namespace>:000000000000:project/<project>/<ms>``
a project, where ``<ms>`` is a creation time in milliseconds, as in the reference
service. Values are checked on construction, so a formatted ARN always parses
back to the same value and names an object the API server can hold.
"""

import re
from dataclasses import dataclass
from typing import Final

from kiu.api import names
from kiu.api.errors import ParseError

PARTITION: Final = "kiu"
SERVICE: Final = "rekognition"
#: kiu has no accounts; a fixed account keeps the reference ARN shape.
ACCOUNT: Final = "000000000000"

_PREFIX: Final = f"arn:{PARTITION}:{SERVICE}:<namespace>:{ACCOUNT}:project/<project>"
PROJECT_FORM: Final = f"{_PREFIX}/<creation ms>"
PROJECT_VERSION_FORM: Final = f"{_PREFIX}/version/<name>/<creation ms>"

_MILLISECONDS: Final = re.compile(r"0|[1-9][0-9]{0,15}")
_QUOTED_LENGTH: Final = 160


@dataclass(frozen=True, kw_only=True)
class ProjectArn:
    """A project: the versions of one model in one namespace."""

    namespace: str
    project: str
    created_ms: int

    def __post_init__(self) -> None:
        _check_project(namespace=self.namespace, project=self.project, text=str(self))
        _check_ms(self.created_ms, text=str(self))

    def __str__(self) -> str:
        return (
            f"arn:{PARTITION}:{SERVICE}:{self.namespace}:{ACCOUNT}:project/{self.project}"
            f"/{self.created_ms}"
        )


@dataclass(frozen=True, kw_only=True)
class ProjectVersionArn:
    """A ProjectVersion: ``version`` is its metadata.name."""

    namespace: str
    project: str
    version: str
    created_ms: int

    def __post_init__(self) -> None:
        text = str(self)
        _check_project(namespace=self.namespace, project=self.project, text=text)
        if not names.is_dns_1035_label(self.version):
            raise ParseError(
                f"{_quote(text)}: version {self.version!r} is not a ProjectVersion name"
                " (a DNS-1035 label)"
            )
        _check_ms(self.created_ms, text=text)

    def __str__(self) -> str:
        return (
            f"arn:{PARTITION}:{SERVICE}:{self.namespace}:{ACCOUNT}:project/{self.project}"
            f"/version/{self.version}/{self.created_ms}"
        )


def parse_project(text: str) -> ProjectArn:
    """Read a project ARN, e.g. DescribeProjectVersions' ProjectArn."""
    namespace, resource = _split(text, form=PROJECT_FORM)
    match resource:
        case ["project", project, ms]:
            return ProjectArn(namespace=namespace, project=project, created_ms=_ms(ms, text=text))
        case ["project", _, "version", _, _]:
            raise ParseError(
                f"{_quote(text)} is a project version ARN; expected a project ARN: {PROJECT_FORM}"
            )
    raise ParseError(f"{_quote(text)} is not a project ARN: expected {PROJECT_FORM}")


def parse_project_version(text: str) -> ProjectVersionArn:
    """Read a project version ARN, e.g. DetectCustomLabels' ProjectVersionArn."""
    namespace, resource = _split(text, form=PROJECT_VERSION_FORM)
    match resource:
        case ["project", project, "version", version, ms]:
            return ProjectVersionArn(
                namespace=namespace, project=project, version=version, created_ms=_ms(ms, text=text)
            )
        case ["project", _, _]:
            raise ParseError(
                f"{_quote(text)} is a project ARN; expected a project version ARN:"
                f" {PROJECT_VERSION_FORM}"
            )
    raise ParseError(
        f"{_quote(text)} is not a project version ARN: expected {PROJECT_VERSION_FORM}"
    )


def _split(text: str, *, form: str) -> tuple[str, list[str]]:
    """Check the fields every kiu ARN shares; return the namespace and resource parts."""
    fields = text.split(":", 5)
    if len(fields) != 6 or fields[0] != "arn":
        raise ParseError(f"{_quote(text)} is not an ARN: expected {form}")
    _, partition, service, namespace, account, resource = fields
    if (partition, service) != (PARTITION, SERVICE):
        raise ParseError(
            f"{_quote(text)} is not a kiu ARN: partition and service are"
            f" {partition!r} and {service!r}, expected {PARTITION!r} and {SERVICE!r}"
        )
    if account != ACCOUNT:
        raise ParseError(f"{_quote(text)}: account is {account!r}, expected {ACCOUNT!r}")
    return namespace, resource.split("/")


def _check_project(*, namespace: str, project: str, text: str) -> None:
    if not names.is_dns_label(namespace):
        raise ParseError(
            f"{_quote(text)}: {namespace!r} in the region field is not a namespace name"
            " (a DNS label)"
        )
    if not names.is_dns_label(project):
        raise ParseError(f"{_quote(text)}: project {project!r} is not a DNS label")


def _ms(field: str, *, text: str) -> int:
    if _MILLISECONDS.fullmatch(field) is None:
        raise ParseError(f"{_quote(text)}: creation time {field!r} is not a number of milliseconds")
    return int(field)


def _check_ms(value: int, *, text: str) -> None:
    # bool is an int; a negative or 17-digit time would not parse back.
    if isinstance(value, bool) or _MILLISECONDS.fullmatch(str(value)) is None:
        raise ParseError(f"{_quote(text)}: creation time {value!r} is not a number of milliseconds")


def _quote(text: str) -> str:
    """Quote caller input in a message, cut short so a huge value cannot flood logs."""
    if len(text) > _QUOTED_LENGTH:
        text = text[:_QUOTED_LENGTH] + "..."
    return repr(text)
