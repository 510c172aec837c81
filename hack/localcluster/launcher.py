"""Start, stop and inspect the local control plane (etcd, API server, controller
manager, scheduler, kube-proxy) and the node agent, as background processes."""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import signal
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from . import config, netutil, pki

Lay = config.Layout


def log(msg: str) -> None:
    print(f"[cluster] {msg}", file=sys.stderr, flush=True)


# --- process bookkeeping -----------------------------------------------------


@dataclass(frozen=True)
class Component:
    name: str
    # argv factory; called with the layout
    argv: Callable[[Lay], list[str]]
    health: Callable[[Lay], bool]
    optional: bool = False


def _pidfile(lay: Lay, name: str) -> Path:
    return lay.pids / f"{name}.pid"


def _read_pid(lay: Lay, name: str) -> int | None:
    try:
        pid = int(_pidfile(lay, name).read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None
    return pid if _alive(pid) else None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie is not alive for our purposes.
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def _start(lay: Lay, comp: Component, env: dict[str, str] | None = None) -> int:
    lay.logs.mkdir(parents=True, exist_ok=True)
    lay.pids.mkdir(parents=True, exist_ok=True)
    argv = comp.argv(lay)
    logf = (lay.logs / f"{comp.name}.log").open("ab")
    logf.write(f"\n==== {time.strftime('%F %T')} {' '.join(argv)}\n".encode())
    logf.flush()
    proc = subprocess.Popen(
        argv,
        stdin=subprocess.DEVNULL,
        stdout=logf,
        stderr=subprocess.STDOUT,
        start_new_session=True,
        cwd=config.REPO,
        env=env or _base_env(lay),
    )
    logf.close()
    _pidfile(lay, comp.name).write_text(f"{proc.pid}\n")
    return proc.pid


def _stop_pid(pid: int, name: str, timeout: float) -> None:
    """SIGTERM the process group, then SIGKILL it after `timeout`."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pid, sig)
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, sig)
        deadline = time.monotonic() + (timeout if sig == signal.SIGTERM else 5)
        while time.monotonic() < deadline and _alive(pid):
            time.sleep(0.1)
        if not _alive(pid):
            return
        if sig == signal.SIGTERM:
            log(f"{name} (pid {pid}) ignored SIGTERM for {timeout:.0f}s; killing it")
    log(f"{name} (pid {pid}) survived SIGKILL")


def _base_env(lay: Lay) -> dict[str, str]:
    env = dict(os.environ)
    venv_bin = str(Path(sys.executable).parent)
    path = [venv_bin, str(lay.bin)] + [
        p for p in env.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin").split(":") if p
    ]
    for extra in ("/usr/local/sbin", "/usr/sbin", "/sbin"):
        if extra not in path:
            path.append(extra)
    env["PATH"] = ":".join(dict.fromkeys(path))
    env.pop("KUBECONFIG", None)
    return env


# --- HTTP health checks --------------------------------------------------------


def _get(url: str, lay: Lay, *, verify: bool = True, timeout: float = 3.0) -> tuple[int, str]:
    ctx: ssl.SSLContext | None = None
    if url.startswith("https://"):
        ctx = ssl.create_default_context(cafile=str(lay.pki / "ca.crt"))
        if not verify:
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
        ctx.load_cert_chain(str(lay.pki / "admin.crt"), str(lay.pki / "admin.key"))
    try:
        with urllib.request.urlopen(url, timeout=timeout, context=ctx) as resp:
            return resp.status, resp.read().decode(errors="replace")
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode(errors="replace")
    except (OSError, ssl.SSLError):
        return 0, ""


def _ok(url: str, *, verify: bool = True) -> Callable[[Lay], bool]:
    def check(lay: Lay) -> bool:
        code, _ = _get(url, lay, verify=verify)
        return code == 200

    return check


def api(lay: Lay, path: str) -> dict | None:
    code, body = _get(config.APISERVER_URL + path, lay, timeout=5)
    if code != 200:
        return None
    return json.loads(body)


# --- components ------------------------------------------------------------------


def _bin(lay: Lay, name: str) -> str:
    path = lay.bin / name
    if not path.exists():
        raise SystemExit(f"{path} is missing: run `make tools` (hack/build.sh) first")
    return str(path)


def _etcd(lay: Lay) -> list[str]:
    client = f"http://127.0.0.1:{config.ETCD_CLIENT_PORT}"
    peer = f"http://127.0.0.1:{config.ETCD_PEER_PORT}"
    return [
        _bin(lay, "etcd"),
        "--name=kiu",
        f"--data-dir={lay.etcd_data}",
        f"--listen-client-urls={client}",
        f"--advertise-client-urls={client}",
        f"--listen-peer-urls={peer}",
        f"--initial-advertise-peer-urls={peer}",
        f"--initial-cluster=kiu={peer}",
        "--listen-metrics-urls=",
        # A throwaway test cluster: durability is not worth the I/O.
        "--unsafe-no-fsync",
        "--snapshot-count=10000",
        "--log-level=warn",
    ]


def _apiserver(lay: Lay) -> list[str]:
    p = lay.pki
    return [
        _bin(lay, "kube-apiserver"),
        f"--etcd-servers=http://127.0.0.1:{config.ETCD_CLIENT_PORT}",
        f"--bind-address={config.APISERVER_HOST}",
        f"--advertise-address={config.APISERVER_HOST}",
        f"--secure-port={config.APISERVER_PORT}",
        f"--tls-cert-file={p / 'apiserver.crt'}",
        f"--tls-private-key-file={p / 'apiserver.key'}",
        f"--client-ca-file={p / 'ca.crt'}",
        f"--kubelet-client-certificate={p / 'apiserver-kubelet-client.crt'}",
        f"--kubelet-client-key={p / 'apiserver-kubelet-client.key'}",
        f"--kubelet-certificate-authority={p / 'ca.crt'}",
        "--kubelet-preferred-address-types=InternalIP",
        "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
        f"--service-account-key-file={p / 'sa.pub'}",
        f"--service-account-signing-key-file={p / 'sa.key'}",
        f"--service-cluster-ip-range={config.SERVICE_CIDR}",
        "--authorization-mode=Node,RBAC",
        # The default admission chain plus NodeRestriction, as kubeadm configures it.
        "--enable-admission-plugins=NodeRestriction",
        "--allow-privileged=true",
        f"--default-not-ready-toleration-seconds={config.TOLERATION_SECONDS}",
        f"--default-unreachable-toleration-seconds={config.TOLERATION_SECONDS}",
        "--profiling=false",
        "--event-ttl=1h",
        "--v=1",
    ]


def _common_component_flags(lay: Lay, stem: str, port: int) -> list[str]:
    kc = lay.component_kubeconfig(stem)
    return [
        f"--kubeconfig={kc}",
        f"--authentication-kubeconfig={kc}",
        f"--authorization-kubeconfig={kc}",
        "--bind-address=127.0.0.1",
        f"--secure-port={port}",
        "--leader-elect=false",
        "--profiling=false",
    ]


def _controller_manager(lay: Lay) -> list[str]:
    p = lay.pki
    return [
        _bin(lay, "kube-controller-manager"),
        *_common_component_flags(lay, "controller-manager", config.CONTROLLER_MANAGER_PORT),
        "--cluster-name=kiu",
        "--use-service-account-credentials=true",
        f"--service-account-private-key-file={p / 'sa.key'}",
        f"--root-ca-file={p / 'ca.crt'}",
        f"--cluster-signing-cert-file={p / 'ca.crt'}",
        f"--cluster-signing-key-file={p / 'ca.key'}",
        f"--service-cluster-ip-range={config.SERVICE_CIDR}",
        f"--node-monitor-grace-period={config.NODE_MONITOR_GRACE_PERIOD}",
        f"--node-monitor-period={config.NODE_MONITOR_PERIOD}",
        # Taint every node of a failed zone at once rather than one per 10 s.
        "--node-eviction-rate=100",
        "--secondary-node-eviction-rate=100",
        "--v=1",
    ]


def _scheduler(lay: Lay) -> list[str]:
    return [
        _bin(lay, "kube-scheduler"),
        *_common_component_flags(lay, "scheduler", config.SCHEDULER_PORT),
        "--v=1",
    ]


def _kube_proxy_config(lay: Lay) -> Path:
    path = lay.config / "kube-proxy.yaml"
    path.write_text(
        f"""apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
clientConnection:
  kubeconfig: {lay.component_kubeconfig("kube-proxy")}
hostnameOverride: {config.node_names(config.ZONES[0])[0]}
mode: iptables
clusterCIDR: {config.POD_CIDR}
bindAddress: 127.0.0.1
healthzBindAddress: 127.0.0.1:{config.KUBE_PROXY_HEALTHZ_PORT}
metricsBindAddress: 127.0.0.1:{config.KUBE_PROXY_METRICS_PORT}
nodePortAddresses: ["{config.BRIDGE_IP}/32"]
iptables:
  masqueradeAll: true
  localhostNodePorts: false
  minSyncPeriod: 1s
  syncPeriod: 30s
conntrack:
  maxPerCore: 0
"""
    )
    return path


def _kube_proxy(lay: Lay) -> list[str]:
    return [_bin(lay, "kube-proxy"), f"--config={_kube_proxy_config(lay)}", "--v=1"]


def _agent(lay: Lay) -> list[str]:
    # --state names the cluster in the process list (stray detection, ps).
    return [sys.executable, "-m", "localcluster", "agent", f"--state={lay.state}"]


def _agent_health(lay: Lay) -> bool:
    code, _ = _get(config.AGENT_CONTROL_URL + "/healthz", lay)
    return code == 200


def kube_proxy_wanted() -> bool:
    if os.environ.get("KIU_KUBE_PROXY", "1") == "0" or config.CLUSTER_ID != 0:
        return False
    return shutil.which("iptables") is not None and shutil.which("iptables-restore") is not None


COMPONENTS = [
    Component("etcd", _etcd, _ok(f"http://127.0.0.1:{config.ETCD_CLIENT_PORT}/health")),
    Component("kube-apiserver", _apiserver, _ok(config.APISERVER_URL + "/readyz")),
    Component(
        "kube-controller-manager",
        _controller_manager,
        _ok(f"https://127.0.0.1:{config.CONTROLLER_MANAGER_PORT}/healthz", verify=False),
    ),
    Component(
        "kube-scheduler",
        _scheduler,
        _ok(f"https://127.0.0.1:{config.SCHEDULER_PORT}/healthz", verify=False),
    ),
    Component("node-agent", _agent, _agent_health),
    Component(
        "kube-proxy",
        _kube_proxy,
        _ok(f"http://127.0.0.1:{config.KUBE_PROXY_HEALTHZ_PORT}/healthz"),
        optional=True,
    ),
]
BY_NAME = {c.name: c for c in COMPONENTS}


def _wanted(lay: Lay) -> list[Component]:
    marker = lay.config / "kube-proxy.enabled"
    return [c for c in COMPONENTS if c.name != "kube-proxy" or marker.exists()]


def _wait(what: str, check: Callable[[], bool], timeout: float, logfile: Path | None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.25)
    hint = f"; last lines of {logfile}:\n{_tail(logfile)}" if logfile else ""
    raise SystemExit(f"timed out after {timeout:.0f}s waiting for {what}{hint}")


def _tail(path: Path, lines: int = 25) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


@contextlib.contextmanager
def _locked(lay: Lay) -> Iterator[None]:
    lay.state.mkdir(parents=True, exist_ok=True)
    with (lay.state / "cluster.lock").open("w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        yield


# --- the commands ------------------------------------------------------------------


def healthy(lay: Lay) -> bool:
    if not (lay.pids / "etcd.pid").exists():
        return False
    for comp in _wanted(lay):
        if _read_pid(lay, comp.name) is None or not comp.health(lay):
            return False
    return _nodes_registered(lay)


def _nodes_registered(lay: Lay) -> bool:
    """Every node of the configuration exists (Ready or not: a zone may be down on purpose).
    A cluster started with other node pools (hack/nodepools.json changed) is not reused."""
    nodes = api(lay, "/api/v1/nodes")
    if not nodes:
        return False
    return config.all_node_names() <= {node["metadata"]["name"] for node in nodes["items"]}


def up(lay: Lay) -> None:
    with _locked(lay):
        if healthy(lay):
            log("already running and healthy; reusing it")
        else:
            if any(_read_pid(lay, c.name) for c in COMPONENTS):
                log("a previous cluster is partly running; stopping it first")
            _down(lay, quiet=True)
            _up(lay)
    print(f"KUBECONFIG={lay.kubeconfig}", flush=True)


def _up(lay: Lay) -> None:
    t0 = time.monotonic()
    netutil.require_root_tools()
    # Set again by the test fixtures when they are the ones starting it.
    (lay.state / "started-by-tests").unlink(missing_ok=True)
    pki.ensure(lay)
    # Fresh state every start: a stale etcd would replay pods from an earlier run.
    for d in (lay.etcd_data, lay.pods):
        shutil.rmtree(d, ignore_errors=True)
    lay.pods.mkdir(parents=True, exist_ok=True)
    netutil.bridge_up()
    env = _component_env(lay)
    marker = lay.config / "kube-proxy.enabled"
    marker.unlink(missing_ok=True)
    wanted = [c for c in COMPONENTS if c.name != "kube-proxy"]
    if kube_proxy_wanted():
        marker.write_text("")
        wanted.append(BY_NAME["kube-proxy"])
        netutil.enable_forwarding(lay)
    else:
        log("no kube-proxy (no iptables, KIU_KUBE_PROXY=0 or KIU_CLUSTER_ID>0): no ClusterIPs")
    for comp in wanted:
        pid = _start_healthy(lay, comp, env)
        log(f"{comp.name} healthy (pid {pid}, {time.monotonic() - t0:.1f}s)")
    _wait("every node to be Ready", lambda: _nodes_ready(lay), 60.0, lay.logs / "node-agent.log")
    _wait(
        "the default ServiceAccount",
        lambda: api(lay, "/api/v1/namespaces/default/serviceaccounts/default") is not None,
        60.0,
        lay.logs / "kube-controller-manager.log",
    )
    log(f"cluster ready in {time.monotonic() - t0:.1f}s")


def _component_env(lay: Lay) -> dict[str, str]:
    env = _base_env(lay)
    env["PYTHONPATH"] = os.pathsep.join(
        [str(config.HACK), *[p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p]]
    )
    return env


_START_TIMEOUTS = {"etcd": 30.0, "kube-apiserver": 120.0}


def _start_healthy(lay: Lay, comp: Component, env: dict[str, str]) -> int:
    """Start one component and wait until its health check passes; its pid."""
    pid = _start(lay, comp, env)
    logfile = lay.logs / f"{comp.name}.log"

    def check() -> bool:
        if not _alive(pid):
            raise SystemExit(f"{comp.name} exited during startup; see {logfile}:\n{_tail(logfile)}")
        return comp.health(lay)

    _wait(f"{comp.name} to become healthy", check, _START_TIMEOUTS.get(comp.name, 60.0), logfile)
    return pid


def stop_component(lay: Lay, name: str) -> None:
    """Stop one component of the running cluster and keep the rest (a fault: the API
    server gone while etcd keeps the state)."""
    comp = BY_NAME[name]
    with _locked(lay):
        pid = _read_pid(lay, comp.name)
        if pid is None:
            log(f"{comp.name} is not running")
            return
        _stop_pid(pid, comp.name, timeout=10.0)
        _pidfile(lay, comp.name).unlink(missing_ok=True)
        log(f"{comp.name} stopped (pid {pid})")


def start_component(lay: Lay, name: str) -> None:
    """Start one stopped component of the running cluster again, with the same
    arguments, and wait until it is healthy; a no-op if it runs."""
    comp = BY_NAME[name]
    with _locked(lay):
        pid = _read_pid(lay, comp.name)
        if pid is None:
            pid = _start_healthy(lay, comp, _component_env(lay))
            log(f"{comp.name} started (pid {pid})")
        else:
            log(f"{comp.name} already running (pid {pid})")


def _nodes_ready(lay: Lay) -> bool:
    nodes = api(lay, "/api/v1/nodes")
    if not nodes:
        return False
    expected = config.all_node_names()
    ready = set()
    for node in nodes["items"]:
        for cond in node.get("status", {}).get("conditions", []):
            if cond["type"] == "Ready" and cond["status"] == "True":
                ready.add(node["metadata"]["name"])
    return expected <= ready


def down(lay: Lay) -> None:
    with _locked(lay):
        _down(lay, quiet=False)


def _down(lay: Lay, *, quiet: bool) -> None:
    stopped = []
    # Reverse start order: the agent first (it stops every pod), etcd last.
    for comp in reversed(COMPONENTS):
        pid = _read_pid(lay, comp.name)
        if pid is not None:
            _stop_pid(pid, comp.name, timeout=20.0 if comp.name == "node-agent" else 10.0)
            stopped.append(comp.name)
        _pidfile(lay, comp.name).unlink(missing_ok=True)
    stray = _kill_strays(lay)
    if (lay.config / "kube-proxy.enabled").exists():
        if (lay.bin / "kube-proxy").exists():
            subprocess.run(
                [str(lay.bin / "kube-proxy"), "--cleanup"],
                capture_output=True,
                check=False,
                timeout=60,
            )
        netutil.remove_kube_firewall()
    netutil.cleanup_all(lay)
    (lay.state / "started-by-tests").unlink(missing_ok=True)
    if not quiet:
        log(
            f"stopped: {', '.join(stopped) or 'nothing was running'}"
            + (f"; killed {stray} stray process(es)" if stray else "")
        )


def _kill_strays(lay: Lay) -> int:
    """Kill what an earlier, crashed run of this cluster left behind: our binaries
    started with this state folder, and the agent started from this checkout.
    Other users of the same binaries (other state folders) are left alone."""
    bindir = str(lay.bin.resolve())
    state = str(lay.state)
    me = os.getpid()
    killed = 0
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == me:
            continue
        try:
            exe = os.readlink(entry / "exe")
            cmdline = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        args = [a.decode(errors="replace") for a in cmdline if a]
        try:
            cwd = os.readlink(entry / "cwd")
        except OSError:
            cwd = ""
        ours = (exe.startswith(bindir + "/") and any(state in a for a in args)) or (
            args[1:4] == ["-m", "localcluster", "agent"]
            and f"--state={state}" in args
            and cwd == str(config.REPO)
        )
        if ours and "--cleanup" not in args:
            with contextlib.suppress(ProcessLookupError):
                os.kill(int(entry.name), signal.SIGKILL)
                log(f"killed stray process {entry.name}: {' '.join(args)[:200]}")
                killed += 1
    return killed


def status(lay: Lay) -> int:
    wanted = {c.name for c in _wanted(lay)}
    all_ok = True
    print(f"{'COMPONENT':<26}{'PID':<10}STATE")
    for comp in COMPONENTS:
        pid = _read_pid(lay, comp.name)
        if comp.name not in wanted and pid is None:
            state = "not used"
        elif pid is None:
            state, all_ok = "stopped", False
        elif comp.health(lay):
            state = "healthy"
        else:
            state, all_ok = "running, not healthy", False
        print(f"{comp.name:<26}{pid or '-'!s:<10}{state}")
    nodes = api(lay, "/api/v1/nodes") if all_ok or _read_pid(lay, "kube-apiserver") else None
    if nodes:
        print(f"\n{'NODE':<22}{'ZONE':<10}{'MODE':<11}{'READY':<9}TAINTS")
        for node in nodes["items"]:
            labels = node["metadata"].get("labels", {})
            ready = next(
                (
                    c["status"]
                    for c in node.get("status", {}).get("conditions", [])
                    if c["type"] == "Ready"
                ),
                "?",
            )
            taints = ",".join(t["key"].split("/")[-1] for t in node["spec"].get("taints", []))
            print(
                f"{node['metadata']['name']:<22}"
                f"{labels.get('topology.kubernetes.io/zone', '-'):<10}"
                f"{labels.get('kiu.dev/node-mode', '-'):<11}{ready:<9}{taints or '-'}"
            )
    code, body = _get(config.AGENT_CONTROL_URL + "/status", lay)
    if code == 200:
        st = json.loads(body)
        down_zones = ", ".join(st.get("zonesDown", [])) or "none"
        print(f"\nagent: {st.get('pods', 0)} pod(s) running as processes; zones down: {down_zones}")
    print(f"\nKUBECONFIG={lay.kubeconfig}")
    print(f"logs: {lay.logs}")
    return 0 if all_ok else 1
