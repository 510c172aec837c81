"""A static source: models, units and access keys from a YAML or JSON file.

For running the gateway without Kubernetes (loopback tests, a laptop, a fixed
fleet). The file is re-read whenever its modification time or size changes, so
editing it adds, removes or un-readies units at once; a file that does not
parse is logged and ignored, keeping the last good state. Example::

    replicas: 1                      # gateway replicas sharing each TPS limit
    accessKeys:
      - {accessKeyId: AKIDEXAMPLE, secretAccessKey: wJalr..., namespaces: [retail]}
    objectStore:                     # credentials for Image.S3Object
      {accessKeyId: minio, secretAccessKey: minio123}
    projectVersions:
      - namespace: retail
        name: shoes-v3
        project: shoes
        createdMs: 1700000000000     # or arn: arn:kiu:rekognition:retail:...
        state: Running               # Running | Stopped
        # status: RUNNING            # optional; derived from state and units if absent
        minInferenceUnits: 1
        maxInferenceUnits: 4
        tps: 5                       # per unit
        task: Classification         # Classification | ObjectDetection
        model: shapes-classifier     # model name in the units' repository
        units:
          - {address: 127.0.0.1, grpcPort: 8001, zone: a, ready: true}

Start and Stop are kept in memory on top of the file (the file is the test's or
operator's to edit): Stopped makes the version STOPPED; Running makes it RUNNING
when a unit is ready, STARTING until then.
"""

from __future__ import annotations

import asyncio
import logging
import os
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from kiu import sigv4
from kiu.api import arn as arns
from kiu.api.errors import ParseError
from kiu.gateway import catalog, errors, upstream

log = logging.getLogger(__name__)


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class _Unit(_Strict):
    address: str
    grpc_port: Annotated[int, Field(alias="grpcPort", ge=1, le=65535)]
    zone: str = ""
    ready: bool = True


class _Version(_Strict):
    namespace: str
    name: str
    project: str
    created_ms: Annotated[int | None, Field(alias="createdMs", ge=0)] = None
    arn: str | None = None
    state: catalog.State = "Running"
    status: Literal["STARTING", "RUNNING", "FAILED", "STOPPING", "STOPPED", "DELETING"] | None = (
        None
    )
    status_message: Annotated[str, Field(alias="statusMessage")] = ""
    min_units: Annotated[int, Field(alias="minInferenceUnits", ge=0)] = 1
    max_units: Annotated[int | None, Field(alias="maxInferenceUnits", ge=1)] = None
    tps: Annotated[float, Field(gt=0)] = 5.0
    task: catalog.Task = "Classification"
    model: str
    units: list[_Unit] = []


class _Key(_Strict):
    access_key_id: Annotated[str, Field(alias="accessKeyId", min_length=1)]
    secret_access_key: Annotated[str, Field(alias="secretAccessKey", min_length=1, repr=False)]
    namespaces: list[str] = ["*"]


class _ObjectStore(_Strict):
    access_key_id: Annotated[str, Field(alias="accessKeyId", min_length=1)]
    secret_access_key: Annotated[str, Field(alias="secretAccessKey", min_length=1, repr=False)]


class _File(_Strict):
    replicas: Annotated[int, Field(ge=1)] = 1
    access_keys: Annotated[list[_Key], Field(alias="accessKeys")] = []
    object_store: Annotated[_ObjectStore | None, Field(alias="objectStore")] = None
    object_stores: Annotated[dict[str, _ObjectStore], Field(alias="objectStores")] = {}
    project_versions: Annotated[list[_Version], Field(alias="projectVersions")] = []


class DirectoryError(ValueError):
    """The directory file cannot be read or does not describe a valid directory."""


class Directory:
    """The file-backed :class:`kiu.gateway.catalog.Source`."""

    def __init__(self, path: str | os.PathLike[str], *, poll_seconds: float = 0.2) -> None:
        self._path = Path(path)
        self._poll = poll_seconds
        self._stamp: tuple[int, int] | None = None
        self._file: _File | None = None
        self._overrides: dict[tuple[str, str], tuple[catalog.State, int | None, int | None]] = {}
        self._catalog: catalog.Catalog | None = None

    def load(self) -> None:
        """Read the file now; raises DirectoryError if it is not valid."""
        stamp = self._stat()
        self._file = _read(self._path)
        self._stamp = stamp

    async def run(self, catalog: catalog.Catalog) -> None:
        self._catalog = catalog
        if self._file is None:
            self.load()
        self._publish()
        catalog.synced = True
        while True:
            await asyncio.sleep(self._poll)
            try:
                stamp = self._stat()
            except DirectoryError:
                continue
            if stamp == self._stamp:
                continue
            self._stamp = stamp
            try:
                self._file = _read(self._path)
            except DirectoryError as exc:
                log.error("ignoring the changed directory file: %s", exc)
                continue
            log.info("directory file changed; reloading")
            self._publish()

    async def set_state(
        self,
        *,
        namespace: str,
        name: str,
        state: catalog.State,
        min_units: int | None = None,
        max_units: int | None = None,
    ) -> None:
        if self._catalog is None or self._catalog.get(namespace, name) is None:
            raise errors.ResourceNotFound(f"ProjectVersion {name} does not exist.")
        self._overrides[(namespace, name)] = (state, min_units, max_units)
        self._publish()

    def _stat(self) -> tuple[int, int]:
        try:
            info = self._path.stat()
        except OSError as exc:
            raise DirectoryError(f"cannot read {self._path}: {exc.strerror}") from None
        return info.st_mtime_ns, info.st_size

    def _publish(self) -> None:
        assert self._catalog is not None
        assert self._file is not None
        content = self._file
        self._catalog.set_replicas(content.replicas)
        self._catalog.set_access_keys(
            catalog.AccessKey(
                credentials=sigv4.Credentials(k.access_key_id, k.secret_access_key),
                namespaces=frozenset(k.namespaces),
            )
            for k in content.access_keys
        )
        store = content.object_store
        self._catalog.s3_credentials = (
            sigv4.Credentials(store.access_key_id, store.secret_access_key) if store else None
        )
        self._catalog.s3_namespace_credentials = {
            namespace: sigv4.Credentials(s.access_key_id, s.secret_access_key)
            for namespace, s in content.object_stores.items()
        }
        self._catalog.replace(self._spec(v) for v in content.project_versions)

    def _spec(self, version: _Version) -> catalog.ModelSpec:
        units = tuple(
            upstream.Endpoint(u.address, u.grpc_port, u.zone) for u in version.units if u.ready
        )
        state, low, high = version.state, version.min_units, version.max_units
        status = version.status
        override = self._overrides.get((version.namespace, version.name))
        if override is not None:
            state = override[0]
            if state == "Running":
                low, high = override[1] or low, override[2]
            status = None
        if status is None:
            status = "STOPPED" if state == "Stopped" else ("RUNNING" if units else "STARTING")
        created_ms, arn = _identity(version)
        return catalog.ModelSpec(
            namespace=version.namespace,
            name=version.name,
            project=version.project,
            created_ms=created_ms,
            arn=arn,
            state=state,
            status=status,
            status_message=version.status_message,
            min_units=low,
            max_units=high,
            tps=version.tps,
            task=version.task,
            model=version.model,
            units=units,
        )


def _identity(version: _Version) -> tuple[int, str]:
    """Creation time and ARN: from ``arn`` if given, else built from ``createdMs``."""
    if version.arn is not None:
        parsed = arns.parse_project_version(version.arn)
        if (parsed.namespace, parsed.version, parsed.project) != (
            version.namespace,
            version.name,
            version.project,
        ):
            raise ParseError(f"arn {version.arn} does not name {version.namespace}/{version.name}")
        return parsed.created_ms, version.arn
    created = version.created_ms or 0
    arn = arns.ProjectVersionArn(
        namespace=version.namespace,
        project=version.project,
        version=version.name,
        created_ms=created,
    )
    return created, str(arn)


def _read(path: Path) -> _File:
    try:
        raw: Any = yaml.safe_load(path.read_text())
    except OSError as exc:
        raise DirectoryError(f"cannot read {path}: {exc.strerror}") from None
    except yaml.YAMLError as exc:
        raise DirectoryError(f"{path} is not YAML or JSON: {exc}") from None
    try:
        content = _File.model_validate(raw or {})
        for version in content.project_versions:
            _identity(version)
    except ValidationError as exc:
        # Without the input values: they may hold secrets.
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}"
            for e in exc.errors(include_input=False, include_url=False)
        )
        raise DirectoryError(f"{path}: {problems}") from None
    except ParseError as exc:
        raise DirectoryError(f"{path}: {exc.message}") from None
    return content
