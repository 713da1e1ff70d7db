"""The local Kubernetes cluster: real control-plane binaries plus the process node.

``make cluster-up``, ``make cluster-down`` and the pytest fixture all use :class:`LocalCluster`.
It builds what is missing (``tests/cluster/build.sh``: etcd, kube-apiserver,
kube-controller-manager, kube-scheduler and kubectl v1.37 from Go modules, plus
``kubeloop-node``), creates the PKI and kubeconfigs, creates the host bridge the pods hang
off, starts every process detached with its log and pid file under one state directory,
and waits for ``/readyz`` and a Ready node. ``up`` twice is fine and ``down`` twice is fine;
``down`` stops every process it started and removes the network it made.

Networking: the bridge ``kl0`` holds 10.88.0.1/16, the API server listens there (1.37 refuses
a loopback advertise address with the default endpoint reconciler, and the API server will
not proxy to loopback pod IPs), and each pod gets an address from the same /16 in a
network namespace of its own. These private addresses only ever exist inside this machine,
on interfaces and namespaces this module created.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import os
import shutil
import signal
import ssl
import subprocess
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from kubeloop.devenv.pki import CertPair, ClientIdentity, ClusterPKI
from kubeloop.devenv.processes import process_running

K8S_VERSION = "v1.37.2"
_REPO = Path(__file__).resolve().parents[3]
_BUILD_SCRIPT = _REPO / "tests" / "cluster" / "build.sh"
# Start order; stopping goes in reverse: kube-proxy and the node first (the node stops the
# pods' processes), etcd last.
_COMPONENTS = (
    "etcd",
    "kube-apiserver",
    "kube-controller-manager",
    "kube-scheduler",
    "kubeloop-node",
    "kube-proxy",
)


class ClusterError(RuntimeError):
    """The local cluster could not be built, started or reached."""


@dataclass(frozen=True)
class ClusterConfig:
    """Where the cluster lives and which addresses it uses."""

    state_dir: Path
    k8s_version: str = K8S_VERSION
    cache_dir: Path = field(
        default_factory=lambda: Path(
            os.environ.get("KUBELOOP_CACHE", str(Path.home() / ".cache" / "kubeloop"))
        )
    )
    bridge: str = "kl0"
    bridge_ip: str = "10.88.0.1"
    pod_cidr: str = "10.88.0.0/16"
    service_cidr: str = "10.96.0.0/16"
    first_service_ip: str = "10.96.0.1"
    api_port: int = 6443
    etcd_client_port: int = 23790
    etcd_peer_port: int = 23800
    controller_manager_port: int = 10257
    scheduler_port: int = 10259
    node_port: int = 10250
    node_name: str = "kubeloop-node"
    ready_timeout: float = 120.0
    with_node: bool = True  # False: control plane only (API-level tests need no node)

    @property
    def components(self) -> tuple[str, ...]:
        """The processes this configuration runs, in start order.

        kube-proxy (nftables mode, so Service ClusterIPs work) runs with the node when the
        ``nft`` tool is installed (Debian package nftables; ``make cluster-up`` installs it).
        """
        if not self.with_node:
            return _COMPONENTS[:4]
        if shutil.which("nft") is None:
            return _COMPONENTS[:5]
        return _COMPONENTS

    @property
    def server(self) -> str:
        """The API server URL clients use."""
        return f"https://{self.bridge_ip}:{self.api_port}"

    @property
    def kubeconfig(self) -> Path:
        """The admin kubeconfig (``O=system:masters``)."""
        return self.state_dir / "kubeconfig"

    @property
    def kubectl_cache(self) -> Path:
        """kubectl's discovery cache for this cluster.

        Every local cluster has the same server URL, so the default cache (keyed by host)
        would serve one cluster's API list to the next; a per-cluster cache, emptied at
        each start, cannot.
        """
        return self.state_dir / "kubectl-cache"


@dataclass(frozen=True)
class ClusterInfo:
    """A running cluster, as a client needs it."""

    server: str
    kubeconfig: Path
    kubectl: Path
    kubectl_cache: Path
    ca_cert: Path
    state_dir: Path
    started_in_seconds: float


class LocalCluster:
    """Starts and stops one local cluster whose state lives in ``config.state_dir``."""

    def __init__(self, config: ClusterConfig) -> None:
        # Processes run with the state directory as their working directory: paths must be absolute.
        self.config = dataclasses.replace(config, state_dir=config.state_dir.resolve())
        config = self.config
        self.pki = ClusterPKI(config.state_dir / "pki")
        self._bin_dir = config.cache_dir / "k8s" / config.k8s_version / "bin"

    # -- public ---------------------------------------------------------------------------

    @property
    def kubectl(self) -> Path:
        """The kubectl built with the cluster (same version as the server)."""
        return self._bin_dir / "kubectl"

    def up(self) -> ClusterInfo:
        """Build what is missing, start what is not running, wait until ready."""
        with self._locked():
            started = time.monotonic()
            node_binary = self._build()
            if not all(self._alive(name) for name in self.config.components):
                self._stop_all()
                shutil.rmtree(self.config.kubectl_cache, ignore_errors=True)
                self._prepare()
                self._start_all(node_binary)
            self._wait_ready()
            return ClusterInfo(
                server=self.config.server,
                kubeconfig=self.config.kubeconfig,
                kubectl=self.kubectl,
                kubectl_cache=self.config.kubectl_cache,
                ca_cert=self.pki.ca.cert,
                state_dir=self.config.state_dir,
                started_in_seconds=time.monotonic() - started,
            )

    def down(self) -> bool:
        """Stop every process and remove the network; True if anything was running."""
        with self._locked():
            was_running = any(self._alive(name) for name in _COMPONENTS)
            self._stop_all()
            self._remove_network()
            return was_running

    def running(self) -> bool:
        """Whether every component is alive (not necessarily ready)."""
        return all(self._alive(name) for name in self.config.components)

    def kubectl_command(self, *args: str) -> list[str]:
        """A kubectl command line against this cluster (with its own discovery cache)."""
        return [
            str(self.kubectl),
            f"--kubeconfig={self.config.kubeconfig}",
            f"--cache-dir={self.config.kubectl_cache}",
            *args,
        ]

    # -- build ----------------------------------------------------------------------------

    def _build(self) -> Path:
        env = {
            **os.environ,
            "K8S_VERSION": self.config.k8s_version,
            "KUBELOOP_CACHE": str(self.config.cache_dir),
        }
        builds: tuple[tuple[str, ...], ...] = ((),)
        if self.config.with_node:
            builds += (("--print-node-path",),)
        result = None
        for args in builds:
            result = subprocess.run(  # noqa: S603 - our own script, fixed arguments
                ["bash", str(_BUILD_SCRIPT), *args],  # noqa: S607
                env=env,
                capture_output=True,
                text=True,
                check=False,
            )
            if result.returncode != 0:
                raise ClusterError(
                    f"building the cluster binaries failed ({_BUILD_SCRIPT} {' '.join(args)}):\n"
                    + result.stderr[-4000:]
                )
        assert result is not None  # noqa: S101 - the loop runs at least once
        node = Path(result.stdout.strip().splitlines()[-1])
        if not self.config.with_node:
            return node
        if not node.is_file():
            raise ClusterError(f"build.sh --print-node-path printed {node}, which is not a file")
        return node

    # -- preparation ----------------------------------------------------------------------

    def _prepare(self) -> None:
        state = self.config.state_dir
        for sub in ("logs", "run", "etcd", "node"):
            (state / sub).mkdir(parents=True, exist_ok=True)
        self._create_network()
        self.pki.ensure_ca()
        self.pki.serving(
            "apiserver",
            "kube-apiserver",
            dns_names=(
                "kubernetes",
                "kubernetes.default",
                "kubernetes.default.svc",
                "kubernetes.default.svc.cluster.local",
                "localhost",
            ),
            ip_addresses=(self.config.bridge_ip, self.config.first_service_ip, "127.0.0.1"),
        )
        self.pki.serving(
            "node-serving",
            f"system:node:{self.config.node_name}",
            dns_names=(self.config.node_name,),
            ip_addresses=(self.config.bridge_ip,),
        )
        self.pki.service_account_keys()
        identities = {
            "kubeconfig": ClientIdentity("admin", "kubeloop-admin", "system:masters"),
            "controller-manager.kubeconfig": ClientIdentity(
                "controller-manager", "system:kube-controller-manager"
            ),
            "scheduler.kubeconfig": ClientIdentity("scheduler", "system:kube-scheduler"),
            "node.kubeconfig": ClientIdentity(
                "node", f"system:node:{self.config.node_name}", "system:nodes"
            ),
            # The built-in binding system:node-proxier grants this user what kube-proxy needs.
            "kube-proxy.kubeconfig": ClientIdentity("kube-proxy", "system:kube-proxy"),
        }
        for file_name, identity in identities.items():
            self._write_kubeconfig(
                state / file_name, self.pki.client(identity), identity.common_name
            )
        self.pki.client(
            ClientIdentity(
                "apiserver-kubelet-client", "kube-apiserver-kubelet-client", "system:masters"
            )
        )

    def _write_kubeconfig(self, path: Path, pair: CertPair, user: str) -> None:
        text = (
            "apiVersion: v1\nkind: Config\n"
            "clusters:\n- name: kubeloop-local\n  cluster:\n"
            f"    server: {self.config.server}\n"
            f"    certificate-authority: {self.pki.ca.cert}\n"
            f"users:\n- name: {user}\n  user:\n"
            f"    client-certificate: {pair.cert}\n"
            f"    client-key: {pair.key}\n"
            "contexts:\n- name: kubeloop-local\n  context:\n"
            f"    cluster: kubeloop-local\n    user: {user}\n"
            "current-context: kubeloop-local\n"
        )
        path.touch(mode=0o600, exist_ok=True)
        path.write_text(text)

    def _create_network(self) -> None:
        bridge, address = self.config.bridge, f"{self.config.bridge_ip}/16"
        if _run(["ip", "link", "show", bridge], check=False).returncode != 0:
            _run(["ip", "link", "add", bridge, "type", "bridge"])
        addresses = _run(["ip", "-o", "addr", "show", "dev", bridge]).stdout
        if f" {address} " not in addresses:
            _run(["ip", "addr", "add", address, "dev", bridge])
        _run(["ip", "link", "set", bridge, "up"])
        if "kube-proxy" in self.config.components:
            # Service traffic is DNATed on the host and forwarded between pod veths.
            Path("/proc/sys/net/ipv4/ip_forward").write_text("1\n")

    def _remove_network(self) -> None:
        if shutil.which("nft") is not None:
            for family in ("ip", "ip6"):
                _run(["nft", "delete", "table", family, "kube-proxy"], check=False)
        netns = _run(["ip", "netns", "list"], check=False).stdout.split()
        for name in netns:
            if name.startswith("kl-"):
                _run(["ip", "netns", "delete", name], check=False)
        if _run(["ip", "link", "show", self.config.bridge], check=False).returncode == 0:
            _run(["ip", "link", "delete", self.config.bridge], check=False)

    # -- processes ------------------------------------------------------------------------

    def _arguments(self, node_binary: Path) -> dict[str, list[str]]:
        cfg, state, pki = self.config, self.config.state_dir, self.pki.directory
        bins = self._bin_dir
        etcd_url = f"http://127.0.0.1:{cfg.etcd_client_port}"
        return {
            "etcd": [
                str(bins / "etcd"),
                "--name=kubeloop",
                f"--data-dir={state / 'etcd'}",
                f"--listen-client-urls={etcd_url}",
                f"--advertise-client-urls={etcd_url}",
                f"--listen-peer-urls=http://127.0.0.1:{cfg.etcd_peer_port}",
                f"--initial-advertise-peer-urls=http://127.0.0.1:{cfg.etcd_peer_port}",
                f"--initial-cluster=kubeloop=http://127.0.0.1:{cfg.etcd_peer_port}",
                "--listen-metrics-urls=",
                "--log-level=warn",
                # Tests write little; keep etcd's memory and disk use small.
                "--quota-backend-bytes=2147483648",
                "--snapshot-count=10000",
            ],
            "kube-apiserver": [
                str(bins / "kube-apiserver"),
                f"--etcd-servers={etcd_url}",
                f"--bind-address={cfg.bridge_ip}",
                f"--advertise-address={cfg.bridge_ip}",
                f"--secure-port={cfg.api_port}",
                f"--service-cluster-ip-range={cfg.service_cidr}",
                f"--tls-cert-file={pki / 'apiserver.crt'}",
                f"--tls-private-key-file={pki / 'apiserver.key'}",
                f"--client-ca-file={pki / 'ca.crt'}",
                "--authorization-mode=Node,RBAC",
                "--enable-admission-plugins=NamespaceLifecycle,ServiceAccount,PodSecurity,"
                "ResourceQuota,LimitRanger,NodeRestriction",
                "--service-account-issuer=https://kubernetes.default.svc",
                f"--service-account-key-file={pki / 'sa.pub'}",
                f"--service-account-signing-key-file={pki / 'sa.key'}",
                f"--kubelet-client-certificate={pki / 'apiserver-kubelet-client.crt'}",
                f"--kubelet-client-key={pki / 'apiserver-kubelet-client.key'}",
                f"--kubelet-certificate-authority={pki / 'ca.crt'}",
                "--kubelet-preferred-address-types=InternalIP",
                # Privileged pods are judged by Pod Security admission per namespace, as on a
                # real cluster, not refused wholesale by the server.
                "--allow-privileged=true",
                "--profiling=false",
                "--endpoint-reconciler-type=lease",
                "--v=1",
            ],
            "kube-controller-manager": [
                str(bins / "kube-controller-manager"),
                f"--kubeconfig={state / 'controller-manager.kubeconfig'}",
                f"--authentication-kubeconfig={state / 'controller-manager.kubeconfig'}",
                f"--authorization-kubeconfig={state / 'controller-manager.kubeconfig'}",
                f"--service-account-private-key-file={pki / 'sa.key'}",
                f"--root-ca-file={pki / 'ca.crt'}",
                f"--cluster-signing-cert-file={pki / 'ca.crt'}",
                f"--cluster-signing-key-file={pki / 'ca.key'}",
                f"--service-cluster-ip-range={cfg.service_cidr}",
                "--use-service-account-credentials=true",
                "--controllers=*",
                "--leader-elect=false",
                "--bind-address=127.0.0.1",
                f"--secure-port={cfg.controller_manager_port}",
                "--profiling=false",
                "--v=1",
            ],
            "kube-scheduler": [
                str(bins / "kube-scheduler"),
                f"--kubeconfig={state / 'scheduler.kubeconfig'}",
                f"--authentication-kubeconfig={state / 'scheduler.kubeconfig'}",
                f"--authorization-kubeconfig={state / 'scheduler.kubeconfig'}",
                "--leader-elect=false",
                "--bind-address=127.0.0.1",
                f"--secure-port={cfg.scheduler_port}",
                "--profiling=false",
                "--v=1",
            ],
            "kubeloop-node": [
                str(node_binary),
                f"--node-name={cfg.node_name}",
                f"--kubeconfig={state / 'node.kubeconfig'}",
                f"--state-dir={state / 'node'}",
                f"--bridge={cfg.bridge}",
                f"--bridge-ip={cfg.bridge_ip}",
                f"--pod-cidr={cfg.pod_cidr}",
                f"--api-host={cfg.bridge_ip}",
                f"--api-port={cfg.api_port}",
                f"--port={cfg.node_port}",
                f"--tls-cert-file={pki / 'node-serving.crt'}",
                f"--tls-private-key-file={pki / 'node-serving.key'}",
                f"--client-ca-file={pki / 'ca.crt'}",
            ],
            "kube-proxy": [
                str(bins / "kube-proxy"),
                f"--kubeconfig={state / 'kube-proxy.kubeconfig'}",
                "--proxy-mode=nftables",
                f"--hostname-override={cfg.node_name}",
                f"--cluster-cidr={cfg.pod_cidr}",
                # Pods share one bridge: without SNAT a reply would skip the host's un-DNAT.
                "--masquerade-all",
                f"--nodeport-addresses={cfg.bridge_ip}/32",
                "--healthz-bind-address=127.0.0.1:10256",
                "--metrics-bind-address=127.0.0.1:10249",
                "--conntrack-max-per-core=0",
                "--v=1",
            ],
        }

    def _start_all(self, node_binary: Path) -> None:
        arguments = self._arguments(node_binary)
        for name in self.config.components:
            self._start(name, arguments[name])
            if name == "etcd":
                self._wait_for(self._etcd_healthy, "etcd to answer", name)
            if name == "kube-apiserver":
                self._wait_for(lambda: self._api_ok("/readyz"), "kube-apiserver /readyz", name)

    def _start(self, name: str, argv: Sequence[str]) -> None:
        log = (self.config.state_dir / "logs" / f"{name}.log").open("ab")
        with log:
            process = subprocess.Popen(  # noqa: S603 - binaries we built, arguments we wrote
                list(argv),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                cwd=self.config.state_dir,
            )
        self._pid_file(name).write_text(f"{process.pid}\n{argv[0]}\n")

    def _stop_all(self) -> None:
        for name in reversed(_COMPONENTS):
            self._stop(name, grace=20.0 if name == "kubeloop-node" else 10.0)

    def _stop(self, name: str, *, grace: float) -> None:
        pid = self._recorded_pid(name)
        if pid is not None and self._alive(name):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pid, signal.SIGTERM)
            deadline = time.monotonic() + grace
            while time.monotonic() < deadline and process_running(pid):
                time.sleep(0.1)
            if process_running(pid):
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(pid, signal.SIGKILL)
                while process_running(pid):
                    time.sleep(0.05)
        self._pid_file(name).unlink(missing_ok=True)

    def _pid_file(self, name: str) -> Path:
        return self.config.state_dir / "run" / f"{name}.pid"

    def _recorded_pid(self, name: str) -> int | None:
        try:
            first = self._pid_file(name).read_text().split("\n", 1)[0]
            return int(first)
        except (OSError, ValueError):
            return None

    def _alive(self, name: str) -> bool:
        """Whether the recorded process still runs the binary we started (pids get reused)."""
        try:
            pid_text, binary = self._pid_file(name).read_text().split("\n")[:2]
            exe = str(Path(f"/proc/{int(pid_text)}/exe").readlink())
        except (OSError, ValueError):
            return False
        return exe == binary

    # -- readiness ------------------------------------------------------------------------

    def _tls(self) -> ssl.SSLContext:
        context = ssl.create_default_context(cafile=str(self.pki.ca.cert))
        admin = self.pki.client(ClientIdentity("admin", "kubeloop-admin", "system:masters"))
        context.load_cert_chain(str(admin.cert), str(admin.key))
        return context

    def _api_ok(self, path: str) -> bool:
        try:
            response = httpx.get(f"{self.config.server}{path}", verify=self._tls(), timeout=2.0)
        except httpx.HTTPError:
            return False
        return response.status_code == 200

    def _etcd_healthy(self) -> bool:
        try:
            response = httpx.get(
                f"http://127.0.0.1:{self.config.etcd_client_port}/health", timeout=2.0
            )
        except httpx.HTTPError:
            return False
        return response.status_code == 200 and '"health":"true"' in response.text.replace(" ", "")

    def _node_ready(self) -> bool:
        try:
            response = httpx.get(
                f"{self.config.server}/api/v1/nodes/{self.config.node_name}",
                verify=self._tls(),
                timeout=2.0,
            )
        except httpx.HTTPError:
            return False
        if response.status_code != 200:
            return False
        conditions = response.json().get("status", {}).get("conditions", [])
        return any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions)

    def _default_service_account(self) -> bool:
        return self._api_ok("/api/v1/namespaces/default/serviceaccounts/default")

    def _wait_ready(self) -> None:
        self._wait_for(lambda: self._api_ok("/readyz"), "kube-apiserver /readyz", "kube-apiserver")
        if self.config.with_node:
            self._wait_for(
                self._node_ready, f"node {self.config.node_name} to be Ready", "kubeloop-node"
            )
        self._wait_for(
            self._default_service_account,
            "the default ServiceAccount (controller-manager)",
            "kube-controller-manager",
        )

    def _wait_for(self, check: object, what: str, component: str) -> None:
        assert callable(check)  # noqa: S101 - typed as object to accept lambdas and methods
        deadline = time.monotonic() + self.config.ready_timeout
        while time.monotonic() < deadline:
            if check():
                return
            if not self._alive(component):
                raise ClusterError(
                    f"{component} exited while waiting for {what}:\n{self._log_tail(component)}"
                )
            time.sleep(0.2)
        raise ClusterError(
            f"timed out after {self.config.ready_timeout:.0f}s waiting for {what}:\n{self._log_tail(component)}"
        )

    def _log_tail(self, name: str, lines: int = 25) -> str:
        path = self.config.state_dir / "logs" / f"{name}.log"
        try:
            return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return f"(no log at {path})"

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        self.config.state_dir.mkdir(parents=True, exist_ok=True)
        with (self.config.state_dir / ".lock").open("a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)


def _run(argv: list[str], *, check: bool = True) -> subprocess.CompletedProcess[str]:
    if shutil.which(argv[0]) is None:
        raise ClusterError(f"{argv[0]} is not installed (Debian package iproute2)")
    result = subprocess.run(argv, capture_output=True, text=True, check=False)  # noqa: S603
    if check and result.returncode != 0:
        raise ClusterError(f"{' '.join(argv)} failed: {result.stderr.strip()}")
    return result
