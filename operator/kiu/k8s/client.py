"""Building an API client: in-cluster service account, or a kubeconfig file.

Every kiu process builds one :class:`ApiClient` at start-up with :func:`connect`
and closes it at exit; the modules of ``kiu.k8s`` take it as their ``api``
argument. Nothing else in kiu imports the client library.
"""

from __future__ import annotations

import os

from kubernetes_asyncio import client as k8s_client
from kubernetes_asyncio import config as k8s_config

from kiu.k8s import errors

ApiClient = k8s_client.ApiClient

_SERVICE_HOST = "KUBERNETES_SERVICE_HOST"


def in_cluster() -> bool:
    """True when running in a pod with a service account."""
    return _SERVICE_HOST in os.environ


async def connect(*, kubeconfig: str | None = None, context: str | None = None) -> ApiClient:
    """An API client from ``kubeconfig`` (or $KUBECONFIG), else the pod's service account.

    Raises :class:`kiu.k8s.errors.Unavailable` when neither is usable.
    """
    path = kubeconfig or os.environ.get("KUBECONFIG")
    configuration = k8s_client.Configuration()
    try:
        if path is None and in_cluster():
            k8s_config.load_incluster_config(client_configuration=configuration)  # type: ignore[no-untyped-call]
        else:
            await k8s_config.load_kube_config(
                config_file=path,
                context=context,
                client_configuration=configuration,
                persist_config=False,
            )
    except (k8s_config.ConfigException, OSError) as exc:
        raise errors.Unavailable(f"no usable Kubernetes configuration: {exc}") from exc
    return k8s_client.ApiClient(configuration=configuration)
