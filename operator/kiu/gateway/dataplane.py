"""The protocol-neutral data plane: every operation, from admission to answer.

The adapters (:mod:`awsjson`, :mod:`rest`) turn the wire into calls of
:class:`Dataplane` and its answers and :mod:`errors` back into the wire; they
hold no policy. DetectCustomLabels runs these steps, each cheaper than the next
and each able to refuse:

1. authenticate (SigV4 or bearer token: the body hash is the only full pass over
   the body before the budget);
2. find the model named by the request (the adapter reads the ARN, or the path,
   without decoding the image);
3. authorize the caller on it;
4. check that it is RUNNING, and count the call as demand;
5. take a token from its budget, or refuse with
   ProvisionedThroughputExceededException: a float comparison, no unit touched.
   A model with no ready unit (scaled to zero) instead holds the call in
   :mod:`hold` until its first unit is ready and a token is free;
6. decode the parameters and the image (base64, or a GET from object storage)
   and check format and size from the image headers;
7. route to a unit (:mod:`routing`) and shape the answer as the reference does.

Every call is counted once in the metrics with its outcome; demand (admitted +
throttled + held) is counted once per call, at step 4.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from kiu.api import projectversion
from kiu.gateway import auth, catalog, errors, hold, images, metrics, objects, upstream
from kiu.gateway.errors import Outcome

log = logging.getLogger(__name__)

DEFAULT_DEADLINE = 30.0
MAX_DESCRIBE_RESULTS = 100
MAX_VERSION_NAMES = 10


@dataclass(frozen=True, slots=True)
class Target:
    """The model a request names; ``created_ms`` comes from an ARN and must match."""

    namespace: str
    name: str
    created_ms: int | None = None


@dataclass(frozen=True, slots=True)
class DetectParams:
    """DetectCustomLabels' parameters past the model: exactly one image source."""

    image: bytes | None = None
    location: objects.Location | None = None
    min_confidence: float | None = None
    max_results: int | None = None


class DetectRequest(Protocol):
    """A DetectCustomLabels request as an adapter read it, decoded lazily."""

    presented: auth.Presented
    #: Whether Kubernetes bearer tokens may authenticate it (native REST API only).
    tokens: bool

    def target(self) -> Target:
        """The model, read cheaply (no image decoding); raises InvalidParameter."""

    def params(self) -> DetectParams:
        """Everything else, decoded after admission; raises the reference's errors."""


class StartRequest(Protocol):
    presented: auth.Presented

    def target(self) -> Target:
        """The model (from its ARN)."""

    def units(self) -> tuple[int, int | None]:
        """MinInferenceUnits (>= 1) and MaxInferenceUnits (>= 1 or None)."""


class StopRequest(Protocol):
    presented: auth.Presented

    def target(self) -> Target:
        """The model (from its ARN)."""


class DescribeRequest(Protocol):
    presented: auth.Presented

    def project(self) -> tuple[str, str]:
        """Namespace and project (from the ProjectArn)."""

    def options(self) -> tuple[list[str] | None, int | None, str | None]:
        """VersionNames, MaxResults and NextToken as sent."""


@dataclass(frozen=True, slots=True)
class Label:
    """One label of the answer; ``box`` = (left, top, width, height) ratios."""

    name: str
    confidence: float
    box: tuple[float, float, float, float] | None = None

    def to_json(self) -> dict[str, Any]:
        """The reference's CustomLabel shape."""
        out: dict[str, Any] = {"Name": self.name, "Confidence": self.confidence}
        if self.box is not None:
            left, top, width, height = self.box
            out["Geometry"] = {
                "BoundingBox": {"Width": width, "Height": height, "Left": left, "Top": top}
            }
        return out


@dataclass(frozen=True, slots=True)
class Page:
    """One page of DescribeProjectVersions."""

    versions: list[catalog.ModelSpec]
    next_token: str | None


class _Account:
    """Counts one call in the metrics, with the outcome of how it ended."""

    __slots__ = ("_clock", "_started", "meters", "operation", "outcome")

    def __init__(
        self, meters: metrics.ModelMeters, operation: str, clock: Callable[[], float]
    ) -> None:
        self.meters = meters
        self.operation = operation
        self.outcome: Outcome = "server_error"
        self._clock = clock
        self._started = clock()

    def __enter__(self) -> _Account:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: Any
    ) -> None:
        if isinstance(exc, errors.GatewayError):
            self.outcome = exc.outcome
        elif kind is asyncio.CancelledError:
            return  # the client went away: no answer, nothing to count
        self.meters.record(
            operation=self.operation, outcome=self.outcome, seconds=self._clock() - self._started
        )


class Dataplane:
    """The operations of the compatible API over a catalog of models."""

    def __init__(
        self,
        *,
        catalog: catalog.Catalog,
        source: catalog.Source,
        authenticator: auth.Authenticator,
        meters: metrics.Metrics,
        objects: objects.ObjectStore | None = None,
        hold_queue: hold.Hold | None = None,
        deadline: float = DEFAULT_DEADLINE,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.catalog = catalog
        self._source = source
        self._auth = authenticator
        self._metrics = meters
        self.hold = hold_queue or hold.Hold(meters=meters, clock=clock)
        self._objects = objects
        self._deadline = deadline
        self._clock = clock

    # --- DetectCustomLabels ----------------------------------------------------------

    async def detect(self, request: DetectRequest) -> list[Label]:
        with _Account(self._metrics.unattributed, "DetectCustomLabels", self._clock) as account:
            principal = await self._authenticate(request.presented, tokens=request.tokens)
            target = request.target()
            await self._authorize(principal, target, verb="invoke")
            entry = self._resolve(target)
            account.meters = entry.meters
            hold.require_running(entry.spec)
            entry.meters.demand.inc()
            if not len(entry.pool):
                await self.hold.wait(entry)  # scaled to zero: wait for the first unit
            elif not entry.bucket.try_acquire(now=self._clock()):
                raise errors.ProvisionedThroughputExceeded()
            # The deadline counts from admission: time held is bounded by the hold's own wait.
            deadline = asyncio.get_running_loop().time() + self._deadline
            params = request.params()
            if params.image is not None:
                data = params.image
                images.inspect(data, max_bytes=images.MAX_BYTES)
            else:
                assert params.location is not None
                data = await self._fetch(params.location, target.namespace, deadline=deadline)
                images.inspect(data, max_bytes=images.MAX_S3_BYTES)
            spec = entry.spec
            prediction, retries = await entry.pool.infer(
                model=spec.model, image=data, deadline=deadline
            )
            if retries:
                self._metrics.retries.inc(retries)
            labels = _labels(prediction, params, detection=spec.task == "ObjectDetection")
            account.outcome = "success"
            return labels

    async def _fetch(self, location: objects.Location, namespace: str, *, deadline: float) -> bytes:
        if self._objects is None:
            raise errors.InvalidS3Object("This gateway is not configured with object storage.")
        return await self._objects.get(location, namespace=namespace, deadline=deadline)

    # --- StartProjectVersion / StopProjectVersion ------------------------------------

    async def start(self, request: StartRequest) -> str:
        """Declare the model Running with its unit range; the status it moves to."""
        with _Account(self._metrics.unattributed, "StartProjectVersion", self._clock) as account:
            principal = await self._authenticate(request.presented, once=True)
            with self._auth.failed(principal):
                target = request.target()
                await self._authorize(principal, target, verb="start")
                entry = self._resolve(target)
                account.meters = entry.meters
                min_units, max_units = request.units()
                if max(min_units, max_units or 0) > projectversion.MAX_INFERENCE_UNITS:
                    raise errors.LimitExceeded(
                        f"At most {projectversion.MAX_INFERENCE_UNITS} inference units per model."
                    )
                if max_units is not None and max_units < min_units:
                    raise errors.InvalidParameter(
                        "MaxInferenceUnits must be greater than or equal to MinInferenceUnits."
                    )
                spec = entry.spec
                if spec.status == "STOPPING" or (
                    spec.state == "Running" and spec.status in ("STARTING", "RUNNING")
                ):
                    raise errors.ResourceInUse(f"ProjectVersion {target.name} is {spec.status}.")
                await self._source.set_state(
                    namespace=target.namespace,
                    name=target.name,
                    state="Running",
                    min_units=min_units,
                    max_units=max_units,
                )
                account.outcome = "success"
                return "STARTING"

    async def stop(self, request: StopRequest) -> str:
        """Declare the model Stopped; the status it moves to."""
        with _Account(self._metrics.unattributed, "StopProjectVersion", self._clock) as account:
            principal = await self._authenticate(request.presented, once=True)
            with self._auth.failed(principal):
                target = request.target()
                await self._authorize(principal, target, verb="stop")
                entry = self._resolve(target)
                account.meters = entry.meters
                if entry.spec.state == "Stopped" or entry.spec.status in ("STOPPING", "STOPPED"):
                    raise errors.ResourceInUse(f"ProjectVersion {target.name} is not running.")
                await self._source.set_state(
                    namespace=target.namespace, name=target.name, state="Stopped"
                )
                account.outcome = "success"
                return "STOPPING"

    # --- DescribeProjectVersions -----------------------------------------------------

    async def describe(self, request: DescribeRequest) -> Page:
        """A page of a project's versions, newest first."""
        with _Account(
            self._metrics.unattributed, "DescribeProjectVersions", self._clock
        ) as account:
            principal = await self._authenticate(request.presented)
            namespace, project = request.project()
            await self._authorize(principal, Target(namespace, ""), verb="get")
            version_names, max_results, next_token = request.options()
            if version_names is not None and not 1 <= len(version_names) <= MAX_VERSION_NAMES:
                raise errors.InvalidParameter("VersionNames must list 1 to 10 names.")
            limit = MAX_DESCRIBE_RESULTS if max_results is None else max_results
            if not 1 <= limit <= MAX_DESCRIBE_RESULTS:
                raise errors.InvalidParameter("MaxResults must be between 1 and 100.")
            after = _read_token(next_token) if next_token is not None else None
            versions = self.catalog.project(namespace, project)
            if not versions:
                raise errors.ResourceNotFound(
                    f"Project {project} has no versions in namespace {namespace}."
                )
            specs = [e.spec for e in versions]
            if version_names is not None:
                wanted = set(version_names)
                specs = [s for s in specs if s.name in wanted]
            if after is not None:
                specs = [s for s in specs if (-s.created_ms, s.name) > after]
            page = specs[:limit]
            token = _write_token(page[-1]) if len(specs) > limit else None
            account.outcome = "success"
            return Page(versions=page, next_token=token)

    # --- shared steps ----------------------------------------------------------------

    async def _authenticate(
        self, presented: auth.Presented, *, tokens: bool = False, once: bool = False
    ) -> auth.Principal:
        try:
            return await self._auth.authenticate(presented, tokens=tokens, once=once)
        except errors.GatewayError as exc:
            self._metrics.auth_failures.labels(exc.name).inc()
            raise

    async def _authorize(self, principal: auth.Principal, target: Target, *, verb: str) -> None:
        try:
            await self._auth.authorize(
                principal, namespace=target.namespace, name=target.name, verb=verb
            )
        except errors.GatewayError as exc:
            self._metrics.auth_failures.labels(exc.name).inc()
            raise

    def _resolve(self, target: Target) -> catalog.Entry:
        entry = self.catalog.get(target.namespace, target.name)
        if entry is None or (
            target.created_ms is not None and target.created_ms != entry.spec.created_ms
        ):
            raise errors.ResourceNotFound(
                f"ProjectVersion {target.name} does not exist in namespace {target.namespace}."
            )
        return entry


def _labels(
    prediction: upstream.Prediction, params: DetectParams, *, detection: bool
) -> list[Label]:
    """Filter by MinConfidence (else each label's own threshold), cap at MaxResults."""
    keep: list[Label] = []
    boxes = prediction.boxes if detection else None
    floor = params.min_confidence
    for i, (name, confidence) in enumerate(
        zip(prediction.labels, prediction.confidences, strict=True)
    ):
        limit = prediction.thresholds[i] if floor is None else floor
        if confidence >= limit:
            keep.append(Label(name, confidence, boxes[i] if boxes is not None else None))
    keep.sort(key=lambda label: -label.confidence)
    if params.max_results is not None:
        del keep[params.max_results :]
    return keep


def _write_token(spec: catalog.ModelSpec) -> str:
    raw = json.dumps([spec.created_ms, spec.name], separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode()


def _read_token(token: str) -> tuple[int, str]:
    try:
        created, name = json.loads(base64.urlsafe_b64decode(token.encode()))
        if not isinstance(created, int) or not isinstance(name, str):
            raise ValueError(token)
    except (ValueError, TypeError, binascii.Error):
        raise errors.InvalidPaginationToken() from None
    return (-created, name)
