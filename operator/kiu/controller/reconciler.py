"""Reconcile one ProjectVersion: parse, observe, decide, build, apply, report.

Everything it reads comes from the operator's watch caches (kopf indices), so a
reconcile that finds nothing to change sends no request at all: objects are
applied only when their content hash differs from what is in the cluster, and
the status is patched only with the fields that changed. Decisions come from
`kiu.policy`; this module only gathers their inputs and carries out their
results.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from collections.abc import Callable, Collection, Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

from kiu.api import projectversion
from kiu.api.errors import ParseError
from kiu.controller import templates
from kiu.controller.config import Config
from kiu.k8s import apply, client, errors, events, observations, projectversions
from kiu.k8s import status as k8s_status
from kiu.manifests import workload
from kiu.policy import billing, budget, feasibility, phase, scaling, zones

logger = logging.getLogger(__name__)

#: (namespace, name) of a ProjectVersion; also the key of its units and objects in the caches,
#: because a ProjectVersion name is a valid label value (the CRD makes it a DNS-1035 label).
Key = tuple[str, str]

INVALID_SPEC = "InvalidSpec"
APPLY_FAILED = "ApplyFailed"
NO_FEASIBLE_ZONE = "NoFeasibleZone"
#: status.zones.<zone>.skipped is cut to this many characters (the CRD's maxLength).
_SKIPPED_LENGTH = 1024
_DEMAND_DIGITS = 3
_HISTORY_DIGITS = 6
#: The demand an activation stands for: above zero, so a model at zero gets one unit.
_ACTIVATION_TPS = 0.001
#: lastDemandTime is stored to the second: an activation up to this much later than it
#: may already have been acted on (it is never newer than the reconcile that handled it).
_ACTIVATION_SLACK = 1.0


@dataclass(frozen=True, slots=True)
class Caches:
    """Read-only views of the watched objects, kept current by kopf (see `handlers`)."""

    projectversions: Mapping[Key, Collection[Mapping[str, Any]]] = field(default_factory=dict)
    units: Mapping[Key, Collection[observations.Unit]] = field(default_factory=dict)
    owned: tuple[Mapping[Key, Collection[observations.Owned]], ...] = ()
    """Deployments, Services and PodDisruptionBudgets, one mapping per kind."""
    nodes: Mapping[str, Collection[observations.Node]] = field(default_factory=dict)


@dataclass(slots=True)
class Memory:
    """What the operator remembers about one ProjectVersion between reconciles.

    Losing it (restart, failover) is safe: every field is rebuilt from the status
    and the cluster, erring on the side of keeping units (see `_seed`).
    """

    pv: projectversion.ProjectVersion | None = None
    ref: events.ObjectRef | None = None
    decision: scaling.Recommendation | None = None
    decided_generation: int | None = None
    ledger: billing.Ledger | None = None
    demand: float | None = None
    """The demand of the last evaluation."""
    published_demand: float | None = None
    """The demand the status shows."""
    allocation: zones.Cause | None = None
    skipped: dict[str, str] | None = None
    """The zones skipped as infeasible last time, with why."""
    last_scale_time: float | None = None
    in_service: int = 0


@dataclass
class Reconciler:
    api: client.ApiClient
    config: Config
    recorder: events.Recorder
    caches: Caches = field(default_factory=Caches)
    clock: Callable[[], float] = time.time
    demand: Mapping[Key, float] | None = None
    """The latest demand sample (None: unknown), set by the evaluation loop."""
    demand_seconds: float | None = None
    """Seconds the latest sample measured over, set by the evaluation loop (None: one
    evaluation period)."""
    memory: dict[Key, Memory] = field(default_factory=dict)

    # ------------------------------------------------------------------ reconcile

    async def reconcile(self, key: Key) -> float | None:
        """Bring one ProjectVersion's objects and status in line; seconds until it is due again."""
        body = _first(self.caches.projectversions.get(key))
        if body is None or body["metadata"].get("deletionTimestamp"):
            # Deleted: the garbage collector removes what it owned (owner references).
            self.memory.pop(key, None)
            return None
        now = self.clock()
        ref = _ref(body)
        try:
            pv = projectversion.parse(body)
        except ParseError as exc:
            self.memory.pop(key, None)  # no decisions on a spec that does not parse
            await self._report_invalid(ref=ref, body=body, message=exc.message, now=now)
            return None
        memory = self.memory.setdefault(key, Memory())
        memory.pv, memory.ref = pv, ref
        spec = pv.spec

        nodes = _all(self.caches.nodes)
        unsupported: str | None = None
        try:
            template: dict[str, Any] | None = templates.pod_template(pv=pv, config=self.config)
        except templates.Unsupported as exc:
            template, unsupported = None, str(exc)
        fit = feasibility.fit(nodes, observations.needs(template or {}))
        placed, problems = _placement(spec.zones, known=fit.known)
        if unsupported:
            problems.append(unsupported)
        skipped = {zone: why for zone, why in fit.skipped.items() if zone in placed}
        feasible = [zone for zone in placed if zone in fit.feasible]
        if not feasible and spec.state != "Running":
            feasible = placed  # a stopped version runs nowhere: nothing to fail for

        owned = [o for kind in self.caches.owned for o in kind.get(key, ())]
        deployments = {o.zone: o for o in owned if o.kind == "Deployment" and o.zone is not None}
        decision = await self._decide(
            key=key,
            memory=memory,
            pv=pv,
            now=now,
            observed=_replicas(deployments.values()),
            activation=projectversions.activation_requested_at(body["metadata"]),
        )
        units = list(self.caches.units.get(key, ()))

        await self._report_skipped(ref=ref, memory=memory, skipped=skipped)
        if template is None or not placed or not feasible:
            # Nothing can be built or placed: leave whatever runs alone, and say why.
            if template is not None and placed:
                assessment = _cannot_run(
                    f"no zone can run a unit: {_describe(skipped)}", reason=NO_FEASIBLE_ZONE
                )
            else:
                assessment = _cannot_run("; ".join(problems))
            await self._write_status(
                ref=ref,
                body=body,
                pv=pv,
                memory=memory,
                units=units,
                allocation=None,
                skipped=skipped,
                assessment=assessment,
                now=now,
            )
            return None

        allocation = zones.split(
            total=decision.desired,
            zones=feasible,
            healthy=fit.healthy,
            policy=zones.OutagePolicy(spec.zone_outage_policy),
            current={zone: d.replicas or 0 for zone, d in deployments.items() if zone in feasible},
            full=Counter(u.zone for u in units if u.no_room and not u.terminating and u.zone),
        )
        try:
            await self._apply(pv=pv, template=template, allocation=allocation, owned=owned)
        except errors.KubernetesError as exc:
            # Retried with back-off (raised below), but the status says why meanwhile.
            problems.append(f"applying the units' objects failed: {exc.message}")
            failed: errors.KubernetesError | None = exc
        else:
            failed = None
        await self._report_allocation(ref=ref, memory=memory, allocation=allocation)

        failures = _failures(units, healthy=fit.healthy, now=now)
        in_service = sum(unit.ready for unit in units)
        assessment = phase.assess(
            previous=phase.Status(pv.status.status) if pv.status.status else None,
            running=spec.state == "Running",
            min_units=spec.min_inference_units,
            desired=decision.desired,
            in_service=in_service,
            pods=len(units),
            failures=failures,
            last_demand_at=decision.history.last_demand_at,
            now=now,
            failure_timeout_seconds=self.config.failure_timeout,
        )
        if problems:
            reason = APPLY_FAILED if failed else INVALID_SPEC
            assessment = _with_problems(assessment, "; ".join(problems), reason=reason)
        if skipped:
            assessment = _with_skipped(assessment, skipped)
        await self._write_status(
            ref=ref,
            body=body,
            pv=pv,
            memory=memory,
            units=units,
            allocation=allocation,
            skipped=skipped,
            assessment=assessment,
            now=now,
        )
        if failed:
            raise failed
        return self._due(memory=memory, assessment=assessment, failures=failures, now=now)

    def forget(self, key: Key) -> None:
        self.memory.pop(key, None)

    # ------------------------------------------------------------------ decide

    async def evaluate(self, key: Key, *, now: float) -> bool:
        """Re-run the scaling policy on the latest demand; True if the status needs an update."""
        memory = self.memory.get(key)
        if memory is None or memory.pv is None or memory.decision is None:
            return False
        before = memory.decision.desired
        memory.demand = _demand(self.demand, key)
        decision = await self._recommend(key=key, memory=memory, pv=memory.pv, now=now)
        return decision.desired != before or _moved(memory.published_demand, memory.demand)

    async def _decide(
        self,
        *,
        key: Key,
        memory: Memory,
        pv: projectversion.ProjectVersion,
        now: float,
        observed: int,
        activation: float | None,
    ) -> scaling.Recommendation:
        """The current decision, re-evaluated at once when the spec changed (min, max, state)
        or a gateway asked for a unit since demand was last seen (scale from zero now,
        not at the next demand sample)."""
        if memory.decision is None:
            memory.decision = _seed(pv=pv, observed=observed, now=now)
            memory.last_scale_time = _seconds(pv.status.last_scale_time)
        last_demand = memory.decision.history.last_demand_at
        activated = activation is not None and (
            last_demand is None or activation > last_demand + _ACTIVATION_SLACK
        )
        if memory.decided_generation == pv.metadata.generation and not activated:
            return memory.decision
        memory.demand = _demand(self.demand, key)
        if activated:
            logger.info("%s/%s: a gateway asked for a unit (activation)", *key)
            memory.demand = max(memory.demand or 0.0, _ACTIVATION_TPS)
        return await self._recommend(key=key, memory=memory, pv=pv, now=now)

    async def _recommend(
        self, *, key: Key, memory: Memory, pv: projectversion.ProjectVersion, now: float
    ) -> scaling.Recommendation:
        assert memory.decision is not None
        spec = pv.spec
        current = memory.decision.desired
        decision = scaling.recommend(
            policy=scaling.Policy(
                tps_per_unit=spec.inference_unit.tps,
                min_units=spec.min_inference_units,
                max_units=spec.max_inference_units,
                target_utilization=spec.autoscaling.target_utilization,
                scale_down_delay_seconds=spec.autoscaling.scale_down_delay_seconds,
                scale_to_zero_after_seconds=spec.autoscaling.scale_to_zero_after_seconds,
                stable_window_seconds=spec.autoscaling.stable_window_seconds,
            ),
            demand_tps=memory.demand,
            demand_seconds=self.demand_seconds or self.config.evaluation_period,
            current=current,
            running=spec.state == "Running",
            history=memory.decision.history,
            now=now,
        )
        memory.decision = decision
        memory.decided_generation = pv.metadata.generation
        if decision.desired != current:
            memory.last_scale_time = now
            logger.info("%s/%s: %s", *key, decision.reason)
            assert memory.ref is not None
            await self.recorder.post(
                ref=memory.ref, type="Normal", reason=decision.cause.value, message=decision.reason
            )
        return decision

    # ------------------------------------------------------------------ apply

    async def _apply(
        self,
        *,
        pv: projectversion.ProjectVersion,
        template: Mapping[str, Any],
        allocation: zones.Allocation,
        owned: list[observations.Owned],
    ) -> None:
        """Apply what differs from the cluster; delete the Deployments of zones no longer used."""
        meta = pv.metadata
        common: dict[str, Any] = {
            "project_version": meta.name,
            "project": pv.spec.project,
            "namespace": meta.namespace,
            "owner": workload.owner_reference(
                api_version=projectversion.API_VERSION,
                kind=projectversion.KIND,
                name=meta.name,
                uid=meta.uid,
            ),
        }
        wanted = [
            workload.deployment(**common, zone=zone, replicas=count, pod_template=template)
            for zone, count in allocation.counts.items()
        ]
        wanted.append(workload.service(**common, pod_template=template))
        wanted.append(workload.pod_disruption_budget(**common))
        have = {(o.kind, o.name): o for o in owned}
        changed = [
            obj
            for obj in wanted
            if (seen := have.get((obj["kind"], obj["metadata"]["name"]))) is None
            or seen.spec_hash != obj["metadata"]["annotations"][workload.SPEC_HASH_ANNOTATION]
        ]
        names = {(obj["kind"], obj["metadata"]["name"]) for obj in wanted}
        stale = [
            o
            for o in owned
            if o.kind == "Deployment" and (o.kind, o.name) not in names and o.owner_uid == meta.uid
        ]
        await asyncio.gather(
            *(apply.apply(self.api, obj=obj) for obj in changed),
            *(
                apply.delete(
                    self.api, kind=o.kind, namespace=meta.namespace, name=o.name, uid=meta.uid
                )
                for o in stale
            ),
        )
        for obj in changed:
            logger.info(
                "%s/%s: applied %s %s",
                meta.namespace,
                meta.name,
                obj["kind"],
                obj["metadata"]["name"],
            )
        for o in stale:
            logger.info("%s/%s: deleted %s %s", meta.namespace, meta.name, o.kind, o.name)

    # ------------------------------------------------------------------ report

    async def _report_allocation(
        self, *, ref: events.ObjectRef, memory: Memory, allocation: zones.Allocation
    ) -> None:
        """An Event when zones are lost or recover (the placement's cause changes)."""
        before, memory.allocation = memory.allocation, allocation.cause
        if allocation.cause == before or (
            before is None and allocation.cause is zones.Cause.SPREAD
        ):
            return
        if allocation.cause is zones.Cause.SPREAD:
            await self.recorder.post(
                ref=ref, type="Normal", reason="ZonesRecovered", message=allocation.reason
            )
        else:
            await self.recorder.post(
                ref=ref, type="Warning", reason=allocation.cause.value, message=allocation.reason
            )

    async def _report_skipped(
        self, *, ref: events.ObjectRef, memory: Memory, skipped: Mapping[str, str]
    ) -> None:
        """An Event when the zones no node of which can run a unit change."""
        before, memory.skipped = memory.skipped, dict(skipped)
        if skipped == before or (before is None and not skipped):
            return
        if skipped:
            message = f"zones skipped: {_describe(skipped)}"
            await self.recorder.post(ref=ref, type="Normal", reason="ZonesSkipped", message=message)
        else:
            message = "every zone has a node that can run a unit"
            await self.recorder.post(
                ref=ref, type="Normal", reason="ZonesFeasible", message=message
            )

    async def _report_invalid(
        self, *, ref: events.ObjectRef, body: Mapping[str, Any], message: str, now: float
    ) -> None:
        """A resource the operator cannot serve: FAILED, Degraded, one Event naming the field."""
        old = body.get("status") or {}
        assessment = _cannot_run(message)
        conditions = phase.merge(
            previous=_recorded(old.get("conditions")),
            current=assessment.conditions,
            now=now,
            generation=int(body["metadata"].get("generation") or 0),
        )
        new = {
            "status": assessment.status.value,
            "statusMessage": assessment.message[:4096],
            "observedGeneration": int(body["metadata"].get("generation") or 0),
            "conditions": [_condition(c) for c in conditions],
        }
        await self._patch_and_announce(ref=ref, old=old, new=new)

    async def _write_status(
        self,
        *,
        ref: events.ObjectRef,
        body: Mapping[str, Any],
        pv: projectversion.ProjectVersion,
        memory: Memory,
        units: list[observations.Unit],
        allocation: zones.Allocation | None,
        skipped: Mapping[str, str],
        assessment: phase.Assessment,
        now: float,
    ) -> None:
        assert memory.decision is not None
        in_service = sum(unit.ready for unit in units)
        ledger = self._bill(memory=memory, pv=pv, in_service=in_service, now=now)
        ready_by_zone = Counter(unit.zone for unit in units if unit.ready)
        conditions = phase.merge(
            previous=[_recorded_condition(c) for c in pv.status.conditions],
            current=assessment.conditions,
            now=now,
            generation=pv.metadata.generation,
        )
        decision = memory.decision
        memory.in_service, memory.published_demand = in_service, memory.demand
        new: dict[str, Any] = {
            "status": assessment.status.value,
            "statusMessage": assessment.message[:4096],
            "arn": str(pv.arn),
            "desiredInferenceUnits": decision.desired,
            "inServiceInferenceUnits": in_service,
            "zones": {
                **{
                    zone: {"desired": count, "inService": ready_by_zone.get(zone, 0)}
                    for zone, count in (allocation.counts.items() if allocation else ())
                },
                **{
                    zone: {
                        "desired": 0,
                        "inService": ready_by_zone.get(zone, 0),
                        "skipped": why[:_SKIPPED_LENGTH],
                    }
                    for zone, why in skipped.items()
                },
            },
            "tpsLimit": budget.tps_limit(
                tps_per_unit=pv.spec.inference_unit.tps, ready_units=in_service
            ),
            "demandTps": None if memory.demand is None else round(memory.demand, _DEMAND_DIGITS),
            "inferenceUnitSeconds": ledger.unit_seconds,
            "inferenceUnitHours": ledger.unit_hours,
            "lastBillingTime": _micro_time(ledger.last_time),
            "lastBilledUnits": ledger.last_units,
            "selector": ",".join(
                f"{k}={v}" for k, v in workload.selector(project_version=pv.metadata.name).items()
            ),
            "observedGeneration": pv.metadata.generation,
            "conditions": [_condition(c) for c in conditions],
            "lastScaleTime": _time(memory.last_scale_time),
            "lastDemandTime": _time(decision.history.last_demand_at),
            "scalingHistory": _history_status(decision.history),
        }
        await self._patch_and_announce(ref=ref, old=body.get("status") or {}, new=new)

    def _bill(
        self,
        *,
        memory: Memory,
        pv: projectversion.ProjectVersion,
        in_service: int,
        now: float,
    ) -> billing.Ledger:
        """The ledger, advanced when the count changed or the billing period passed.

        The newer of the remembered and the stored ledger wins: the stored one may
        lag behind the last write by one watch event.
        """
        status = pv.status
        stored = billing.Ledger(
            unit_seconds=status.inference_unit_seconds or 0.0,
            last_time=_seconds(status.last_billing_time),
            last_units=status.last_billed_units or 0,
        )
        ledger = memory.ledger
        if ledger is None or (stored.last_time or 0.0) > (ledger.last_time or 0.0):
            ledger = stored
        if (
            ledger.last_time is None
            or ledger.last_units != in_service
            or now - ledger.last_time >= self.config.billing_period
        ):
            ledger = billing.accrue(ledger=ledger, now=now, in_service=in_service)
        memory.ledger = ledger
        return ledger

    async def _patch_and_announce(
        self, *, ref: events.ObjectRef, old: Mapping[str, Any], new: Mapping[str, Any]
    ) -> None:
        """Patch what changed, then post an Event for each transition worth a person's notice."""
        patch = k8s_status.merge_patch(old, new)
        if not patch:
            return
        await k8s_status.patch(
            self.api,
            group=projectversion.GROUP,
            version=projectversion.VERSION,
            plural=projectversion.PLURAL,
            namespace=ref.namespace,
            name=ref.name,
            status=patch,
        )
        for type_, reason, message in _transitions(old, new):
            logger.info("%s/%s: %s: %s", ref.namespace, ref.name, reason, message)
            await self.recorder.post(ref=ref, type=type_, reason=reason, message=message)

    def _due(
        self,
        *,
        memory: Memory,
        assessment: phase.Assessment,
        failures: list[phase.UnitFailure],
        now: float,
    ) -> float | None:
        """When to look again without an event: the next ledger write, or a failure timing out."""
        due: list[float] = []
        ledger = memory.ledger
        if memory.in_service > 0 and ledger is not None and ledger.last_time is not None:
            due.append(max(ledger.last_time + self.config.billing_period - now, 0.0) + 0.01)
        if failures and assessment.status is not phase.Status.FAILED:
            oldest = min(failure.since for failure in failures)
            due.append(max(oldest + self.config.failure_timeout - now, 0.0) + 1.0)
        return min(due, default=None)


# ---------------------------------------------------------------------- helpers


def _first(values: Iterable[Mapping[str, Any]] | None) -> Mapping[str, Any] | None:
    return next(iter(values), None) if values is not None else None


def _all(stores: Mapping[str, Collection[observations.Node]]) -> list[observations.Node]:
    return [node for store in stores.values() for node in store]


def _placement(listed: Iterable[str], *, known: Collection[str]) -> tuple[list[str], list[str]]:
    """The zones to place units in (`spec.zones` that exist, else all) and what is wrong."""
    listed = list(listed)
    if not listed:
        if known:
            return sorted(known), []
        return [], [f"no node has a {workload.TOPOLOGY_ZONE_LABEL} label: no zone for units"]
    missing = [zone for zone in listed if zone not in known]
    problems = []
    if missing:
        problems.append(
            f"spec.zones: no node has {workload.TOPOLOGY_ZONE_LABEL} "
            f"{' or '.join(repr(zone) for zone in missing)}"
        )
    return [zone for zone in listed if zone in known], problems


def _replicas(deployments: Iterable[observations.Owned]) -> int:
    return sum(d.replicas or 0 for d in deployments)


def _ref(body: Mapping[str, Any]) -> events.ObjectRef:
    meta = body["metadata"]
    return events.ObjectRef(
        api_version=projectversion.API_VERSION,
        kind=projectversion.KIND,
        namespace=meta["namespace"],
        name=meta["name"],
        uid=meta["uid"],
    )


def _seed(
    *, pv: projectversion.ProjectVersion, observed: int, now: float
) -> scaling.Recommendation:
    """The decision an operator that just started inherits.

    The last published desired count (else what the Deployments ask for), and the
    scaling history the status keeps. Without one (written by an older operator),
    the count counts as a recommendation made now, so nothing scales down before a
    full scale-down delay has passed; idleness counts from the last demand recorded.
    """
    status = pv.status
    current = (
        status.desired_inference_units if status.desired_inference_units is not None else observed
    )
    last_demand = _seconds(status.last_demand_time)
    return scaling.Recommendation(
        desired=current,
        cause=scaling.Cause.STEADY,
        reason="inherited",
        needed=current,
        history=_history(
            status.scaling_history,
            current=current,
            last_demand_at=now if last_demand is None else last_demand,
            now=now,
        ),
    )


def _history(
    stored: projectversion.ScalingHistory | None,
    *,
    current: int,
    last_demand_at: float,
    now: float,
) -> scaling.History:
    if stored is None or not stored.recommendations:
        return scaling.History(recommendations=((now, current),), last_demand_at=last_demand_at)
    return scaling.History(
        recommendations=tuple((r.time.timestamp(), r.units) for r in stored.recommendations),
        last_demand_at=last_demand_at,
        stable=scaling.Rate(
            calls=stored.stable_calls or 0.0,
            seconds=stored.stable_seconds or 0.0,
            spread=stored.stable_spread or 0.0,
        ),
        sampled_at=_seconds(stored.sampled_at),
        burst_until=_seconds(stored.burst_until),
        window=scaling.Rate(  # a plain count: each second weighs 1
            stored.window_calls or 0.0, stored.window_seconds or 0.0, stored.window_seconds or 0.0
        ),
    )


def _history_status(history: scaling.History) -> dict[str, Any]:
    """The history as `status.scalingHistory` (times to the microsecond)."""
    return {
        "recommendations": [
            {"time": _micro_time(t), "units": units} for t, units in history.recommendations
        ],
        "stableCalls": round(history.stable.calls, _HISTORY_DIGITS),
        "stableSeconds": round(history.stable.seconds, _HISTORY_DIGITS),
        "stableSpread": round(history.stable.spread, _HISTORY_DIGITS),
        "sampledAt": _micro_time(history.sampled_at),
        "burstUntil": _micro_time(history.burst_until),
        "windowCalls": round(history.window.calls, _HISTORY_DIGITS),
        "windowSeconds": round(history.window.seconds, _HISTORY_DIGITS),
    }


def _demand(sample: Mapping[Key, float] | None, key: Key) -> float | None:
    return None if sample is None else sample.get(key, 0.0)


def _moved(before: float | None, after: float | None) -> bool:
    """Whether demand changed enough to be worth a status write (1% or 0.1 TPS)."""
    if before is None or after is None:
        return before != after
    return abs(after - before) > max(0.1, 0.01 * before)


def _failures(
    units: Iterable[observations.Unit], *, healthy: Collection[str], now: float
) -> list[phase.UnitFailure]:
    """Why units that should serve do not: kubelet failures, lost zones, full zones,
    scheduling."""
    failures = []
    for unit in units:
        if unit.terminating or unit.ready:
            continue
        since = unit.created if unit.created is not None else now
        pending_since = unit.unschedulable_since or since
        if unit.failure is not None:
            why = (unit.failure.reason, unit.failure.message, since)
        elif unit.zone is not None and unit.zone not in healthy:
            message = f"zone {unit.zone} has no ready, schedulable node"
            why = ("ZoneUnavailable", message, pending_since)
        elif unit.no_room is not None:
            message = f"zone {unit.zone} has no room: {unit.no_room}"
            why = ("InsufficientCapacity", message, pending_since)
        elif unit.unschedulable_since is not None:
            why = ("Unschedulable", "no node in its zone can take it", unit.unschedulable_since)
        else:
            continue
        reason, message, at = why
        failures.append(phase.UnitFailure(unit=unit.name, reason=reason, message=message, since=at))
    return failures


def _cannot_run(message: str, *, reason: str = INVALID_SPEC) -> phase.Assessment:
    return phase.judge(
        status=phase.Status.FAILED,
        message=f"failed: {message}",
        ready=phase.Condition("Ready", "False", reason, message),
        progressing=phase.Condition("Progressing", "False", reason, message),
        degraded=phase.Condition("Degraded", "True", reason, message),
    )


def _describe(skipped: Mapping[str, str]) -> str:
    """'zone-c: no node fits (...); ...', sorted by zone."""
    return "; ".join(f"{zone}: {why}" for zone, why in sorted(skipped.items()))


def _with_skipped(assessment: phase.Assessment, skipped: Mapping[str, str]) -> phase.Assessment:
    """Say which zones take no units and why, in the status message and in Ready's."""
    note = f"zones skipped: {_describe(skipped)}"
    return replace(
        assessment,
        message=f"{assessment.message}; {note}",
        conditions=tuple(
            replace(c, message=f"{c.message}; {note}") if c.type == "Ready" else c
            for c in assessment.conditions
        ),
    )


def _with_problems(assessment: phase.Assessment, message: str, *, reason: str) -> phase.Assessment:
    """Runs, but not as specified: Degraded says so. A spec that cannot be met (a listed
    zone does not exist) is Stalled; a failed apply is retried, so still Progressing."""
    by_type = {c.type: c for c in assessment.conditions}
    degraded = by_type["Degraded"]
    progressing = by_type["Progressing"]
    if reason == APPLY_FAILED:
        progressing = phase.Condition("Progressing", "True", reason, message)
    return phase.judge(
        status=assessment.status,
        message=f"{assessment.message}; {message}",
        ready=by_type["Ready"],
        progressing=progressing,
        degraded=phase.Condition(
            "Degraded",
            "True",
            reason,
            message if degraded.status != "True" else f"{message}; {degraded.message}",
        ),
        stalled=(reason, message) if reason == INVALID_SPEC else None,
    )


def _transitions(
    old: Mapping[str, Any], new: Mapping[str, Any]
) -> list[tuple[events.EventType, str, str]]:
    """Events for a new status value and for Degraded turning on, changing cause, or clearing."""
    found: list[tuple[events.EventType, str, str]] = []
    if new.get("status") != old.get("status"):
        failed = new["status"] == phase.Status.FAILED
        found.append(
            ("Warning" if failed else "Normal", new["status"].capitalize(), new["statusMessage"])
        )
    before = {c.get("type"): c for c in old.get("conditions") or []}.get("Degraded") or {}
    after = {c["type"]: c for c in new["conditions"]}.get("Degraded") or {}
    if after.get("status") == "True" and (
        before.get("status") != "True"
        or before.get("reason") != after["reason"]
        or (after["reason"] == INVALID_SPEC and before.get("message") != after["message"])
    ):
        found.append(("Warning", after["reason"], after["message"]))
    elif after.get("status") != "True" and before.get("status") == "True":
        found.append(("Normal", "Recovered", after.get("message", "")))
    return found


def _recorded(raw: object) -> list[phase.RecordedCondition]:
    """Conditions from a status that may not parse (the resource is invalid)."""
    recorded = []
    for c in raw if isinstance(raw, list) else []:
        if isinstance(c, Mapping) and {"type", "status", "lastTransitionTime"} <= c.keys():
            recorded.append(
                phase.RecordedCondition(
                    type=str(c["type"]),
                    status=c["status"],
                    reason=str(c.get("reason", "")),
                    message=str(c.get("message", "")),
                    last_transition_time=str(c["lastTransitionTime"]),
                    observed_generation=int(c.get("observedGeneration") or 0),
                )
            )
    return recorded


def _recorded_condition(c: projectversion.Condition) -> phase.RecordedCondition:
    return phase.RecordedCondition(
        type=c.type,
        status=c.status,
        reason=c.reason,
        message=c.message,
        last_transition_time=c.last_transition_time.strftime("%Y-%m-%dT%H:%M:%SZ"),
        observed_generation=c.observed_generation or 0,
    )


def _condition(c: phase.RecordedCondition) -> dict[str, Any]:
    return {
        "type": c.type,
        "status": c.status,
        "reason": c.reason,
        "message": c.message,
        "lastTransitionTime": c.last_transition_time,
        "observedGeneration": c.observed_generation,
    }


def _seconds(moment: datetime | None) -> float | None:
    return None if moment is None else moment.timestamp()


def _time(seconds: float | None) -> str | None:
    if seconds is None:
        return None
    return datetime.fromtimestamp(seconds, tz=UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _micro_time(seconds: float | None) -> str | None:
    if seconds is None:
        return None
    return datetime.fromtimestamp(seconds, tz=UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
