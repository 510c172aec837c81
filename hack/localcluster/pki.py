"""Certificates, keys and kubeconfigs for the local cluster, made with the openssl CLI."""

from __future__ import annotations

import base64
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from . import config

DAYS = "3650"


@dataclass(frozen=True)
class Client:
    """A client certificate: file stem, common name, organisation (group)."""

    stem: str
    cn: str
    org: str | None = None


# The API server's identity towards the kubelet API (`kubectl logs`); the only client
# the agent's kubelet endpoint serves.
KUBELET_CLIENT = Client(
    "apiserver-kubelet-client", "kube-apiserver-kubelet-client", "system:masters"
)

CLIENTS = (
    Client("admin", "kiu-admin", "system:masters"),
    Client("controller-manager", "system:kube-controller-manager"),
    Client("scheduler", "system:kube-scheduler"),
    Client("kube-proxy", "system:kube-proxy"),
    KUBELET_CLIENT,
)


def node_client(name: str) -> Client:
    """The kubelet identity of one node: the Node authorizer and NodeRestriction confine it
    to that Node, its Lease and the pods bound to it (and what those pods reference)."""
    return Client(f"node-{name}", f"system:node:{name}", "system:nodes")


def _openssl(*args: str, cwd: Path) -> None:
    if shutil.which("openssl") is None:
        raise SystemExit("openssl is required to create the cluster certificates")
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


def _key(path: Path) -> None:
    _openssl(
        "genpkey",
        "-algorithm",
        "EC",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-out",
        path.name,
        cwd=path.parent,
    )
    path.chmod(0o600)


def _signed(pki: Path, stem: str, subject: str, ext: str) -> None:
    extfile = pki / f"{stem}.ext"
    extfile.write_text(ext)
    _key(pki / f"{stem}.key")
    _openssl("req", "-new", "-key", f"{stem}.key", "-subj", subject, "-out", f"{stem}.csr", cwd=pki)
    _openssl(
        "x509",
        "-req",
        "-in",
        f"{stem}.csr",
        "-CA",
        "ca.crt",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-days",
        DAYS,
        "-extfile",
        extfile.name,
        "-out",
        f"{stem}.crt",
        cwd=pki,
    )
    (pki / f"{stem}.csr").unlink()
    extfile.unlink()


def ensure(lay: config.Layout) -> None:
    """Create whatever is missing under <state>/pki (idempotent)."""
    pki = lay.pki
    pki.mkdir(parents=True, exist_ok=True)
    if not (pki / "ca.crt").exists():
        _key(pki / "ca.key")
        _openssl(
            "req",
            "-x509",
            "-new",
            "-key",
            "ca.key",
            "-subj",
            "/CN=kiu-local-ca",
            "-days",
            DAYS,
            "-addext",
            "basicConstraints=critical,CA:TRUE",
            "-addext",
            "keyUsage=critical,keyCertSign,cRLSign,digitalSignature",
            "-out",
            "ca.crt",
            cwd=pki,
        )
    if not (pki / "sa.key").exists():
        _key(pki / "sa.key")
        _openssl("pkey", "-in", "sa.key", "-pubout", "-out", "sa.pub", cwd=pki)
    if not (pki / "apiserver.crt").exists():
        dns = [
            "localhost",
            "kubernetes",
            "kubernetes.default",
            "kubernetes.default.svc",
            "kubernetes.default.svc.cluster.local",
        ]
        ips = ["127.0.0.1", config.BRIDGE_IP, config.KUBERNETES_SERVICE_IP]
        san = ",".join([f"DNS:{d}" for d in dns] + [f"IP:{i}" for i in ips])
        _signed(
            pki,
            "apiserver",
            "/CN=kube-apiserver",
            "basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature,keyEncipherment\n"
            f"extendedKeyUsage=serverAuth\nsubjectAltName={san}\n",
        )
    if not (pki / "kubelet.crt").exists():
        _signed(
            pki,
            "kubelet",
            "/CN=kiu-kubelet",
            "basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature,keyEncipherment\n"
            f"extendedKeyUsage=serverAuth\nsubjectAltName=IP:{config.BRIDGE_IP},IP:127.0.0.1\n",
        )
    nodes = [node_client(name) for name in sorted(config.all_node_names())]
    for client in (*CLIENTS, *nodes):
        if (pki / f"{client.stem}.crt").exists():
            continue
        subject = f"/CN={client.cn}" + (f"/O={client.org}" if client.org else "")
        _signed(
            pki,
            client.stem,
            subject,
            "basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature,keyEncipherment\n"
            "extendedKeyUsage=clientAuth\n",
        )
    _kubeconfigs(lay)


def _b64(path: Path) -> str:
    return base64.b64encode(path.read_bytes()).decode()


def kubeconfig_text(lay: config.Layout, stem: str, user: str) -> str:
    pki = lay.pki
    return f"""apiVersion: v1
kind: Config
clusters:
- name: kiu
  cluster:
    server: {config.APISERVER_URL}
    certificate-authority-data: {_b64(pki / "ca.crt")}
users:
- name: {user}
  user:
    client-certificate-data: {_b64(pki / f"{stem}.crt")}
    client-key-data: {_b64(pki / f"{stem}.key")}
contexts:
- name: kiu
  context:
    cluster: kiu
    user: {user}
    namespace: default
current-context: kiu
"""


def _kubeconfigs(lay: config.Layout) -> None:
    lay.config.mkdir(parents=True, exist_ok=True)
    for client in CLIENTS:
        if client is KUBELET_CLIENT:
            continue
        path = lay.kubeconfig if client.stem == "admin" else lay.component_kubeconfig(client.stem)
        text = kubeconfig_text(lay, client.stem, client.cn)
        if not path.exists() or path.read_text() != text:
            path.write_text(text)
            path.chmod(0o600)
