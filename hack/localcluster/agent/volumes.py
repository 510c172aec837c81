"""Pod volumes materialised as directories, and container environments."""

from __future__ import annotations

import base64
import os
import re
import shutil
from dataclasses import dataclass, field
from decimal import ROUND_CEILING, Decimal
from pathlib import Path
from typing import Any

from .kube import ApiError, Kube, Obj

_SA_TOKEN_DEFAULT_EXPIRY = 3607


class VolumeError(Exception):
    """The pod cannot start yet (a referenced object is missing): retried."""


@dataclass
class Materialised:
    """Where each volume lives on the host, and the tokens to refresh."""

    paths: dict[str, Path] = field(default_factory=dict)
    # (volume dir, file path inside it, audience, expirationSeconds)
    tokens: list[tuple[Path, str, str | None, int]] = field(default_factory=list)
    read_only: set[str] = field(default_factory=set)


class Resolver:
    """Reads ConfigMaps, Secrets and volume claims once per pod start (cached per call)."""

    def __init__(self, kube: Kube, namespace: str) -> None:
        self.kube = kube
        self.namespace = namespace
        self._cache: dict[tuple[str, str], Obj | None] = {}

    async def _get(self, kind: str, name: str, *, namespaced: bool = True) -> Obj | None:
        key = (kind, name)
        if key not in self._cache:
            scope = f"/namespaces/{self.namespace}" if namespaced else ""
            try:
                self._cache[key] = await self.kube.get(f"/api/v1{scope}/{kind}/{name}")
            except ApiError as e:
                if e.status != 404:
                    # E.g. 403 while the Node authorizer has not yet linked a just-bound
                    # pod to what it references: retried like a missing object.
                    raise VolumeError(f"{kind} {name!r}: HTTP {e.status}") from e
                self._cache[key] = None
        return self._cache[key]

    async def claim(self, name: str) -> Obj | None:
        """A PersistentVolumeClaim of the pod's namespace, None if there is none."""
        return await self._get("persistentvolumeclaims", name)

    async def volume(self, name: str) -> Obj | None:
        """A PersistentVolume, None if there is none."""
        return await self._get("persistentvolumes", name, namespaced=False)

    async def configmap(self, name: str, optional: bool) -> dict[str, bytes] | None:
        obj = await self._get("configmaps", name)
        if obj is None:
            if optional:
                return None
            raise VolumeError(f'configmap "{name}" not found')
        data = {k: v.encode() for k, v in (obj.get("data") or {}).items()}
        data.update({k: base64.b64decode(v) for k, v in (obj.get("binaryData") or {}).items()})
        return data

    async def secret(self, name: str, optional: bool) -> dict[str, bytes] | None:
        obj = await self._get("secrets", name)
        if obj is None:
            if optional:
                return None
            raise VolumeError(f'secret "{name}" not found')
        data = {k: base64.b64decode(v) for k, v in (obj.get("data") or {}).items()}
        data.update({k: v.encode() for k, v in (obj.get("stringData") or {}).items()})
        return data


def _write(base: Path, rel: str, content: bytes, mode: int | None) -> None:
    target = (base / rel).resolve()
    if not str(target).startswith(str(base.resolve())):
        raise VolumeError(f"path {rel!r} escapes its volume")
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.tmp")
    tmp.write_bytes(content)
    tmp.chmod(mode if mode is not None else 0o644)
    os.replace(tmp, target)


def _project(
    base: Path, data: dict[str, bytes], items: list[Obj] | None, default_mode: int | None
) -> None:
    if items:
        for item in items:
            if item["key"] not in data:
                if item.get("optional"):
                    continue
                raise VolumeError(f'key "{item["key"]}" not found')
            _write(base, item["path"], data[item["key"]], item.get("mode", default_mode))
    else:
        for key, value in data.items():
            _write(base, key, value, default_mode)


def field_value(pod: Obj, path: str) -> str:
    """The value of a downward-API fieldRef (the subset kubelet supports)."""
    meta, spec, status = pod["metadata"], pod["spec"], pod.get("status", {})
    m = re.fullmatch(r"metadata\.(labels|annotations)\['(.+)'\]", path)
    if m:
        return str((meta.get(m.group(1)) or {}).get(m.group(2), ""))
    if path in ("metadata.labels", "metadata.annotations"):
        items = sorted((meta.get(path.split(".")[1]) or {}).items())
        return "\n".join(f'{k}="{v}"' for k, v in items)
    simple = {
        "metadata.name": meta.get("name"),
        "metadata.namespace": meta.get("namespace"),
        "metadata.uid": meta.get("uid"),
        "spec.nodeName": spec.get("nodeName"),
        "spec.serviceAccountName": spec.get("serviceAccountName"),
        "status.hostIP": status.get("hostIP"),
        "status.podIP": status.get("podIP"),
        "status.hostIPs": ",".join(i["ip"] for i in status.get("hostIPs", [])),
        "status.podIPs": ",".join(i["ip"] for i in status.get("podIPs", [])),
    }
    if path not in simple:
        raise VolumeError(f"unsupported fieldRef {path!r}")
    return str(simple[path] or "")


_QUANTITY = re.compile(r"^([0-9.]+)([a-zA-Z]*)$")
_SUFFIX = {
    "": 1,
    "m": Decimal("0.001"),
    "k": 10**3,
    "M": 10**6,
    "G": 10**9,
    "T": 10**12,
    "Ki": 2**10,
    "Mi": 2**20,
    "Gi": 2**30,
    "Ti": 2**40,
}


def quantity(text: str) -> Decimal:
    m = _QUANTITY.match(str(text))
    if not m or m.group(2) not in _SUFFIX:
        raise VolumeError(f"cannot parse quantity {text!r}")
    return Decimal(m.group(1)) * Decimal(_SUFFIX[m.group(2)])


NODE_ALLOCATABLE = {"cpu": "8", "memory": "16Gi", "ephemeral-storage": "100Gi"}


def resource_value(pod: Obj, container_name: str | None, ref: Obj) -> str:
    containers = pod["spec"].get("containers", []) + pod["spec"].get("initContainers", [])
    name = ref.get("containerName") or container_name
    container = next((c for c in containers if c["name"] == name), {})
    kind, _, res = ref["resource"].partition(".")
    value = (container.get("resources", {}).get(kind) or {}).get(res)
    if value is None and kind == "requests":
        value = "0"
    if value is None:
        value = NODE_ALLOCATABLE.get(res, "0")
    divisor = quantity(ref.get("divisor", "1"))
    return str(int((quantity(value) / divisor).to_integral_value(ROUND_CEILING)))


async def materialise(
    kube: Kube, pod: Obj, pod_dir: Path, ca_pem: bytes, resolver: Resolver
) -> Materialised:
    """Create every volume of the pod under pod_dir/volumes/<name>."""
    out = Materialised()
    vol_root = pod_dir / "volumes"
    vol_root.mkdir(parents=True, exist_ok=True)
    for vol in pod["spec"].get("volumes", []) or []:
        name = vol["name"]
        base = vol_root / name
        if "hostPath" in vol:
            out.paths[name] = _host_path(vol["hostPath"])
            continue
        if "persistentVolumeClaim" in vol:
            claim = vol["persistentVolumeClaim"]
            out.paths[name] = await _claimed_path(resolver, claim["claimName"])
            if claim.get("readOnly"):
                out.read_only.add(name)
            continue
        if base.exists():
            shutil.rmtree(base)
        base.mkdir(parents=True)
        out.paths[name] = base
        if "emptyDir" in vol:
            continue
        if "configMap" in vol:
            src = vol["configMap"]
            data = await resolver.configmap(src["name"], src.get("optional", False))
            if data is not None:
                _project(base, data, src.get("items"), src.get("defaultMode"))
            out.read_only.add(name)
        elif "secret" in vol:
            src = vol["secret"]
            data = await resolver.secret(src["secretName"], src.get("optional", False))
            if data is not None:
                _project(base, data, src.get("items"), src.get("defaultMode", 0o644))
            out.read_only.add(name)
        elif "downwardAPI" in vol:
            _downward(base, pod, vol["downwardAPI"].get("items", []), None)
            out.read_only.add(name)
        elif "projected" in vol:
            proj = vol["projected"]
            mode = proj.get("defaultMode")
            for source in proj.get("sources", []) or []:
                if "serviceAccountToken" in source:
                    tok = source["serviceAccountToken"]
                    rel = tok["path"]
                    aud = tok.get("audience")
                    exp = int(tok.get("expirationSeconds", _SA_TOKEN_DEFAULT_EXPIRY))
                    token = await request_token(kube, pod, aud, exp)
                    _write(base, rel, token.encode(), mode if mode is not None else 0o644)
                    out.tokens.append((base, rel, aud, exp))
                elif "configMap" in source:
                    src = source["configMap"]
                    data = await resolver.configmap(src["name"], src.get("optional", False))
                    if data is not None:
                        _project(base, data, src.get("items"), mode)
                elif "secret" in source:
                    src = source["secret"]
                    data = await resolver.secret(src["name"], src.get("optional", False))
                    if data is not None:
                        _project(base, data, src.get("items"), mode)
                elif "downwardAPI" in source:
                    _downward(base, pod, source["downwardAPI"].get("items", []), mode)
                elif "clusterTrustBundle" in source:
                    _write(base, source["clusterTrustBundle"]["path"], ca_pem, mode)
            out.read_only.add(name)
        elif "ephemeral" in vol:
            # No storage provisioner: a per-pod directory stands in.
            continue
        else:
            kinds = sorted(k for k in vol if k != "name")
            raise VolumeError(f"volume {name!r}: unsupported type {kinds}")
    return out


async def _claimed_path(resolver: Resolver, claim: str) -> Path:
    """The directory of the PersistentVolume a claim is bound to, as a kubelet mounts a
    statically provisioned volume: the PV's hostPath or local path."""
    pvc = await resolver.claim(claim)
    if pvc is None:
        raise VolumeError(f'persistentvolumeclaim "{claim}" not found')
    phase = (pvc.get("status") or {}).get("phase")
    volume = (pvc.get("spec") or {}).get("volumeName")
    if phase != "Bound" or not volume:
        raise VolumeError(f'persistentvolumeclaim "{claim}" is not bound (phase {phase})')
    pv = await resolver.volume(volume)
    if pv is None:
        raise VolumeError(f'persistentvolume "{volume}" of claim "{claim}" not found')
    return _volume_path(volume, pv.get("spec") or {})


def _volume_path(volume: str, spec: Obj) -> Path:
    if "hostPath" in spec:
        return _host_path(spec["hostPath"])
    if "local" in spec:
        path = Path(spec["local"]["path"])
        if not path.is_dir():
            raise VolumeError(f'persistentvolume "{volume}": local path {path} does not exist')
        return path
    kinds = sorted(k for k in spec if k not in _PV_FIELDS)
    raise VolumeError(f'persistentvolume "{volume}": unsupported source {kinds}')


#: PersistentVolume spec fields that are not a volume source.
_PV_FIELDS = frozenset(
    {
        "accessModes",
        "capacity",
        "claimRef",
        "mountOptions",
        "nodeAffinity",
        "persistentVolumeReclaimPolicy",
        "storageClassName",
        "volumeAttributesClassName",
        "volumeMode",
    }
)


def _host_path(spec: Obj) -> Path:
    host = Path(spec["path"])
    kind = spec.get("type", "")
    if kind in ("DirectoryOrCreate", ""):
        host.mkdir(parents=True, exist_ok=True)
    elif kind == "FileOrCreate":
        host.parent.mkdir(parents=True, exist_ok=True)
        host.touch(exist_ok=True)
    elif not host.exists():
        raise VolumeError(f"hostPath {host} does not exist")
    return host


def _downward(base: Path, pod: Obj, items: list[Obj], mode: int | None) -> None:
    for item in items:
        if "fieldRef" in item:
            value = field_value(pod, item["fieldRef"]["fieldPath"])
        else:
            value = resource_value(pod, None, item["resourceFieldRef"])
        _write(base, item["path"], value.encode(), item.get("mode", mode))


async def request_token(kube: Kube, pod: Obj, audience: str | None, expiry: int) -> str:
    meta = pod["metadata"]
    sa = pod["spec"].get("serviceAccountName") or "default"
    body: dict[str, Any] = {
        "apiVersion": "authentication.k8s.io/v1",
        "kind": "TokenRequest",
        "spec": {
            "audiences": [audience] if audience else [],
            "expirationSeconds": expiry,
            "boundObjectRef": {
                "apiVersion": "v1",
                "kind": "Pod",
                "name": meta["name"],
                "uid": meta["uid"],
            },
        },
    }
    path = f"/api/v1/namespaces/{meta['namespace']}/serviceaccounts/{sa}/token"
    try:
        resp = await kube.create(path, body)
    except ApiError as e:
        raise VolumeError(f"token for service account {sa!r}: HTTP {e.status}") from e
    return str(resp["status"]["token"])


_VAR_REF = re.compile(r"\$\$|\$\(([A-Za-z_][A-Za-z0-9_.-]*)\)")


def expand(text: str, env: dict[str, str]) -> str:
    """Kubernetes $(VAR) expansion: known variables are replaced, $$ escapes."""

    def sub(m: re.Match[str]) -> str:
        if m.group(0) == "$$":
            return "$"
        name = m.group(1)
        return env.get(name, m.group(0))

    return _VAR_REF.sub(sub, text)


async def container_env(
    pod: Obj, container: Obj, base: dict[str, str], resolver: Resolver
) -> dict[str, str]:
    env = dict(base)
    for src in container.get("envFrom", []) or []:
        prefix = src.get("prefix", "")
        data: dict[str, bytes] | None = None
        if "configMapRef" in src:
            ref = src["configMapRef"]
            data = await resolver.configmap(ref["name"], ref.get("optional", False))
        elif "secretRef" in src:
            ref = src["secretRef"]
            data = await resolver.secret(ref["name"], ref.get("optional", False))
        for key, value in (data or {}).items():
            env[prefix + key] = value.decode(errors="replace")
    for var in container.get("env", []) or []:
        name = var["name"]
        if "valueFrom" not in var:
            env[name] = expand(var.get("value", ""), env)
            continue
        vf = var["valueFrom"]
        if "fieldRef" in vf:
            env[name] = field_value(pod, vf["fieldRef"]["fieldPath"])
        elif "resourceFieldRef" in vf:
            env[name] = resource_value(pod, container["name"], vf["resourceFieldRef"])
        elif "secretKeyRef" in vf or "configMapKeyRef" in vf:
            is_secret = "secretKeyRef" in vf
            ref = vf["secretKeyRef"] if is_secret else vf["configMapKeyRef"]
            optional = ref.get("optional", False)
            getter = resolver.secret if is_secret else resolver.configmap
            data = await getter(ref["name"], optional)
            if data is None:
                continue
            if ref["key"] not in data:
                if optional:
                    continue
                kind = "secret" if is_secret else "configmap"
                raise VolumeError(f'key "{ref["key"]}" not found in {kind} "{ref["name"]}"')
            env[name] = data[ref["key"]].decode(errors="replace")
    return env
