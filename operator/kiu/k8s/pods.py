"""Finding pods by label to talk to them directly (the gateway replicas' metrics)."""

from __future__ import annotations

from dataclasses import dataclass

from kubernetes_asyncio import client as k8s_client

from kiu.k8s import rest


@dataclass(frozen=True, slots=True)
class Address:
    namespace: str
    name: str
    ip: str


async def running(
    api: k8s_client.ApiClient, *, label_selector: str, namespace: str | None = None
) -> list[Address]:
    """Running pods matching `label_selector` that have an IP, in one namespace or all."""
    path = f"/api/v1/namespaces/{namespace}/pods" if namespace else "/api/v1/pods"
    answer = await rest.call(
        api,
        method="GET",
        path=path,
        query={"labelSelector": label_selector, "fieldSelector": "status.phase=Running"},
    )
    return [
        Address(namespace=pod["metadata"]["namespace"], name=pod["metadata"]["name"], ip=ip)
        for pod in answer.get("items", [])
        if (ip := (pod.get("status") or {}).get("podIP"))
        and not pod["metadata"].get("deletionTimestamp")
    ]
