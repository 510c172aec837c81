"""Host networking for the pod network: the bridge, per-pod netns and veth pairs."""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import signal
import subprocess
from pathlib import Path

from . import config


def ip(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(["ip", *args], capture_output=True, text=True, check=False)
    if check and proc.returncode != 0:
        raise RuntimeError(f"ip {' '.join(args)}: {proc.stderr.strip()}")
    return proc


def require_root_tools() -> None:
    if os.geteuid() != 0:
        raise SystemExit("the local cluster needs root (network namespaces, bind mounts)")
    for tool in ("ip", "openssl", "nsenter", "mount"):
        if shutil.which(tool) is None:
            raise SystemExit(f"`{tool}` is required (Debian: iproute2, openssl, util-linux)")


def _link_exists(name: str) -> bool:
    return Path(f"/sys/class/net/{name}").exists()


def bridge_up() -> None:
    """Create the pod bridge with the first address of the pod range (idempotent)."""
    if not _link_exists(config.BRIDGE):
        ip("link", "add", config.BRIDGE, "type", "bridge")
    addr = f"{config.BRIDGE_IP}/{config.POD_PREFIX_LEN}"
    shown = ip("-4", "addr", "show", "dev", config.BRIDGE).stdout
    if f"inet {addr}" not in shown:
        ip("addr", "add", addr, "dev", config.BRIDGE)
    ip("link", "set", config.BRIDGE, "up")
    # Gratuitous ARP-free, fast neighbour resolution is the default; nothing else.


def enable_forwarding(lay: config.Layout) -> None:
    """Routed pod->ClusterIP->pod traffic needs IPv4 forwarding (kube-proxy only)."""
    path = Path("/proc/sys/net/ipv4/ip_forward")
    saved = lay.config / "ip_forward.orig"
    current = path.read_text().strip()
    if not saved.exists():
        saved.write_text(current)
    if current != "1":
        path.write_text("1")
    # Forwarding is for pod <-> pod (via ClusterIPs) only: nothing leaves the host.
    _iptables("-N", FORWARD_CHAIN)
    _iptables("-F", FORWARD_CHAIN)
    _iptables("-A", FORWARD_CHAIN, "-s", config.POD_CIDR, "-d", config.POD_CIDR, "-j", "ACCEPT")
    _iptables("-A", FORWARD_CHAIN, "-s", config.POD_CIDR, "-j", "REJECT")
    _iptables("-A", FORWARD_CHAIN, "-d", config.POD_CIDR, "-j", "REJECT")
    if _iptables("-C", "FORWARD", "-j", FORWARD_CHAIN) != 0:
        _iptables("-I", "FORWARD", "1", "-j", FORWARD_CHAIN)


FORWARD_CHAIN = "KIU-FORWARD"


def remove_kube_firewall() -> None:
    """kube-proxy --cleanup leaves its filter-table KUBE-FIREWALL chain behind."""
    for hook in ("INPUT", "OUTPUT"):
        while _iptables("-D", hook, "-j", "KUBE-FIREWALL") == 0:
            pass
    _iptables("-F", "KUBE-FIREWALL")
    _iptables("-X", "KUBE-FIREWALL")


def _iptables(*args: str) -> int:
    if shutil.which("iptables") is None:
        return 1
    return subprocess.run(["iptables", "-w", *args], capture_output=True, check=False).returncode


def restore_forwarding(lay: config.Layout) -> None:
    saved = lay.config / "ip_forward.orig"
    if saved.exists():
        while _iptables("-D", "FORWARD", "-j", FORWARD_CHAIN) == 0:
            pass
        _iptables("-F", FORWARD_CHAIN)
        _iptables("-X", FORWARD_CHAIN)
        with contextlib.suppress(OSError):
            Path("/proc/sys/net/ipv4/ip_forward").write_text(saved.read_text().strip())
        saved.unlink()


def netns_name(uid: str) -> str:
    return config.NETNS_PREFIX + uid


def veth_name(uid: str) -> str:
    # 15 characters at most, with the "p" of the pod end.
    width = 14 - len(config.VETH_PREFIX)
    return config.VETH_PREFIX + hashlib.sha1(uid.encode()).hexdigest()[:width]


def netns_list() -> list[str]:
    try:
        return sorted(os.listdir("/run/netns"))
    except FileNotFoundError:
        return []


def netns_pids(name: str) -> list[int]:
    proc = ip("netns", "pids", name, check=False)
    return [int(p) for p in proc.stdout.split() if p.isdigit()]


def pod_netns_up(uid: str, pod_ip: str) -> None:
    """A netns with lo and eth0 (pod_ip/16, default route via the bridge)."""
    ns, host = netns_name(uid), veth_name(uid)
    pod_if = host + "p"
    pod_netns_down(uid)
    ip("netns", "add", ns)
    ip("link", "add", host, "type", "veth", "peer", "name", pod_if)
    ip("link", "set", pod_if, "netns", ns)
    ip("link", "set", host, "master", config.BRIDGE)
    ip("link", "set", host, "up")
    ip("-n", ns, "link", "set", "lo", "up")
    ip("-n", ns, "link", "set", pod_if, "name", "eth0")
    ip("-n", ns, "addr", "add", f"{pod_ip}/{config.POD_PREFIX_LEN}", "dev", "eth0")
    ip("-n", ns, "link", "set", "eth0", "up")
    ip("-n", ns, "route", "add", "default", "via", config.BRIDGE_IP)


def pod_link(uid: str, up: bool) -> None:
    """Cut or restore a pod's network (zone outage)."""
    host = veth_name(uid)
    if _link_exists(host):
        ip("link", "set", host, "up" if up else "down", check=False)


def kill_netns_processes(name: str) -> None:
    for pid in netns_pids(name):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def pod_netns_down(uid: str) -> None:
    ns, host = netns_name(uid), veth_name(uid)
    if ns in netns_list():
        kill_netns_processes(ns)
        ip("netns", "del", ns, check=False)
    if _link_exists(host):
        ip("link", "del", host, check=False)


def cleanup_all(lay: config.Layout) -> None:
    """Remove every pod netns, veth and the bridge; kill whatever ran inside."""
    cleanup_pods_only()
    if _link_exists(config.BRIDGE):
        ip("link", "del", config.BRIDGE, check=False)
    restore_forwarding(lay)


def cleanup_pods_only() -> None:
    """Remove every pod netns and veth; kill whatever ran inside."""
    for ns in netns_list():
        if ns.startswith(config.NETNS_PREFIX):
            kill_netns_processes(ns)
            ip("netns", "del", ns, check=False)
    with contextlib.suppress(FileNotFoundError):
        for name in os.listdir("/sys/class/net"):
            if name.startswith(config.VETH_PREFIX):
                ip("link", "del", name, check=False)
