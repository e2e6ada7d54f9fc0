"""instance: the composition root — options in, a running instance out.

`open_instance(RunOptions)` (a trio async context manager) builds one
instance under one nursery: the namespaces (ns.launcher), the network
engine on the tap the namespace child opens (io.engine), the port driver
and the `-p` ports (port/), the REST API on `STATE/api.sock` (api/), then
confines the process (ns.confine) — all before `STATE/child_pid` says the
instance is ready. `run_command` is `rootlessnet run`: the same, forwarding
signals to the command and returning its status.

Nothing below this module knows of the others: the launcher hands over a
nursery and a control channel, the engine a tap fd, the API callbacks.

Start-up order (`run`, what the command line calls): the flags are checked
and the namespace child is forked before trio is imported; the child sets
up the namespaces and the tap while this process imports what the chosen
mode needs (trio, the engine, the port driver, the API, the confinement),
then starts them under trio. Importing this module loads no trio.
ROOTLESSNET_DEBUG_TIMING=1 prints each phase's duration (ns/timing.py).
"""

from __future__ import annotations

import ipaddress
import os
import re
import socket
import sys
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, AsyncIterator

from rootlessnet.errors import UserError, engine_failure
from rootlessnet.ns import idmap
from rootlessnet.ns import launcher
from rootlessnet.ns import statedir as sd
from rootlessnet.ns import timing
from rootlessnet.ns.syscalls import PROPAGATION

if TYPE_CHECKING:
    import trio

NETS = ("slirp", "slirp4netns", "none", "host")
PORT_DRIVERS = ("builtin", "slirp", "none")
REAPERS = ("auto", "true", "false")
SANDBOX_MODES = ("auto", "true", "false")
SUBID_SOURCES = idmap.SUBID_SOURCES
SANDBOX_PROBE_ENV = "ROOTLESSNET_SANDBOX_PROBE"  # tests: {"write": PATH, "exec": EMPTY_FILE} -> STATE/sandbox-probe.json
IFNAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,14}")  # what `ip link` accepts, minus ':' and '@'


@dataclass
class RunOptions:
    command: list[str]
    net: str = "slirp"
    detach_netns: bool = False
    pidns: bool = False
    utsns: bool = False
    ipcns: bool = False
    cgroupns: bool = False
    reaper: str = "auto"
    copy_up: list[str] = field(default_factory=list)
    propagation: str = "rprivate"
    state_dir: str | None = None
    subid_source: str = "auto"
    env: dict[str, str] = field(default_factory=dict)
    quiet: bool = False
    # --net=slirp
    mtu: int = 65520
    cidr: str = "10.0.2.0/24"
    ifname: str = "tap0"
    ipv6: bool = False
    allow_host_loopback: bool = False
    outbound: str = "all"
    dns_upstream: str | None = None
    dns_hosts: dict[str, list[str]] | None = None
    pcap: str | None = None
    vnet_hdr: bool = True
    # ports
    port_driver: str | None = None  # None: builtin with --net=slirp, else none
    publish: list[str] = field(default_factory=list)
    api: bool = True
    hosts: list[str] = field(default_factory=list)  # multi-host network (test harness)
    limits: list[str] = field(default_factory=list)  # --limit NAME=VALUE: the engine's bounds (stack.config.Limits)
    # confinement of this process once the instance is set up (docs/robustness.md)
    sandbox: str = "auto"  # auto: only when own_process; true: all parts or fail; false: off
    sandbox_fs: str | None = None  # --slirp4netns-sandbox: the Landlock part (None: as sandbox)
    sandbox_seccomp: str | None = None  # --slirp4netns-seccomp: the seccomp part (None: as sandbox)
    own_process: bool = False  # the process exists only for this instance (the CLI): "auto" confines it

    def sandbox_modes(self) -> tuple[str, str]:
        """(Landlock mode, seccomp mode), each "true", "auto" or "false", as they apply to this process.

        --sandbox=false turns everything off; otherwise a part's own flag wins.
        "auto" never confines a process that hosts other things (tests, an
        in-process harness): only the CLI's own process, which sets own_process.
        """

        def mode(part: str | None) -> str:
            m = "false" if self.sandbox == "false" else (part or self.sandbox)
            return "false" if m == "auto" and not self.own_process else m

        return mode(self.sandbox_fs), mode(self.sandbox_seccomp)

    @property
    def port_driver_name(self) -> str:
        d = self.port_driver or ("builtin" if self.slirp else "none")
        return "slirp" if d == "slirp4netns" else d

    @property
    def slirp(self) -> bool:
        return self.net in ("slirp", "slirp4netns")

    def dns_upstream_addr(self) -> tuple[str, int] | None:
        """--dns-upstream parsed, else the host's first nameserver (None: none known)."""
        from rootlessnet.stack.config import parse_hostport

        if self.dns_upstream is None:
            return host_nameserver()
        text = self.dns_upstream.strip()
        if not text:
            raise UserError("--dns-upstream is empty: give ADDR[:PORT] (e.g. 127.0.0.1:53 or [::1]:53), "
                            "or leave the flag out to use the host's resolver")
        if text.startswith("[") and "]" not in text:
            raise UserError(f"--dns-upstream {text!r}: missing ']' (use [V6ADDR]:PORT)")
        return parse_hostport(text)

    def net_config(self):
        """The engine's NetConfig (raises UserError for bad values)."""
        from rootlessnet.stack.config import ConfigError, Limits, NetConfig, parse_cidr, parse_outbound

        try:
            limits = Limits()
            for text in self.limits:
                limits = limits.with_text(text)
            upstream = self.dns_upstream_addr()
            cidr = parse_cidr(self.cidr)
            if cidr.prefixlen < 8:
                raise ConfigError(f"--cidr {self.cidr} is too large: use a prefix between /8 and /26 (e.g. 10.0.2.0/24)")
            dns_hosts = self.dns_hosts
            if dns_hosts is not None and self.hosts:
                dns_hosts = {**dns_hosts, **{h: [str(cidr.network_address + 101 + i)] for i, h in enumerate(self.hosts)}}
            return NetConfig(cidr=cidr, mtu=self.mtu, ipv6=self.ipv6,
                             allow_host_loopback=self.allow_host_loopback, outbound=parse_outbound(self.outbound),
                             dns_upstream=upstream, dns_hosts=dns_hosts, limits=limits)
        except ConfigError as e:
            raise UserError(str(e)) from None

    def validate(self) -> None:
        if not self.command:
            raise UserError("missing command: use rootlessnet run [FLAGS] -- CMD [ARGS...]")
        if self.net not in NETS:
            raise UserError(f"unknown --net {self.net!r}: use one of {', '.join(NETS)}")
        if self.reaper not in REAPERS:
            raise UserError(f"unknown --reaper {self.reaper!r}: use one of {', '.join(REAPERS)}")
        if self.subid_source not in SUBID_SOURCES:
            raise UserError(f"unknown --subid-source {self.subid_source!r}: use one of {', '.join(SUBID_SOURCES)}")
        for flag, value in (("--sandbox", self.sandbox), ("--slirp4netns-sandbox", self.sandbox_fs),
                            ("--slirp4netns-seccomp", self.sandbox_seccomp)):
            if value is not None and value not in SANDBOX_MODES:
                raise UserError(f"unknown {flag} {value!r}: use one of {', '.join(SANDBOX_MODES)}")
        if self.propagation not in PROPAGATION:
            raise UserError(f"unknown --propagation {self.propagation!r}: use one of {', '.join(PROPAGATION)}")
        if self.state_dir is not None and not self.state_dir.strip():
            raise UserError("--state-dir is empty (an unset variable?): give a directory, "
                            "or leave the flag out for a temporary one")
        if self.detach_netns and self.net == "host":
            raise UserError("--detach-netns needs a network namespace: use it with --net=none (or slirp), not --net=host")
        if not IFNAME.fullmatch(self.ifname) or self.ifname in ("lo", ".", ".."):
            raise UserError(f"--ifname {self.ifname!r}: use 1-15 letters, digits, '_', '.' or '-', not 'lo' "
                            "(the namespace's loopback)")
        if self.pcap is not None:
            _check_pcap_path(self.pcap)
        if self.slirp:
            self.net_config()
        if self.port_driver_name not in PORT_DRIVERS:
            raise UserError(f"unknown --port-driver {self.port_driver!r}: use one of builtin, slirp (alias slirp4netns), none")
        if self.port_driver_name == "slirp" and not self.slirp:
            raise UserError("--port-driver=slirp needs --net=slirp (the engine forwards the ports)")
        if self.port_driver_name == "builtin" and self.net == "host":
            raise UserError("--port-driver=builtin needs a network namespace: with --net=host, ports need no forwarding")
        if self.hosts:
            if not self.slirp:
                raise UserError("--hosts needs --net=slirp: the engine connects the hosts")
            for h in self.hosts:
                if not re.fullmatch(r"[a-z0-9][a-z0-9-]{0,30}", h) or h in ("main", "host"):
                    raise UserError(f"--hosts: bad host name {h!r}: use lower-case letters, digits and '-' "
                                    "(up to 31), not 'main' or 'host'")
            if len(set(self.hosts)) != len(self.hosts):
                raise UserError("--hosts: a host name appears twice")
            if len(self.hosts) > 100:
                raise UserError("--hosts: at most 100 hosts")
        if self.publish and self.port_driver_name == "none":
            raise UserError("-p/--publish needs a port driver: use --port-driver=builtin or slirp")
        if self.publish:
            self._check_publish()
        for d in self.copy_up:
            if not os.path.isabs(d) or not os.path.isdir(d):
                raise UserError(f"--copy-up={d}: not an absolute path to an existing directory")

    def _check_publish(self) -> None:
        from rootlessnet.port.spec import SpecError, parse_spec

        for p in self.publish:
            try:
                parse_spec(p)
            except SpecError as e:
                raise UserError(f"-p {p}: {e}") from None

    def namespace_options(self, netcfg=None) -> launcher.NamespaceOptions:
        """What the namespace child sets up; with --net=slirp, the tap too (`netcfg`: this
        instance's NetConfig, computed if not given)."""
        net_mode = "host" if self.net == "host" else ("detached" if self.detach_netns else "own")
        tap = None
        if self.slirp:
            tap = tap_parameters(self, netcfg if netcfg is not None else self.net_config(), name=self.ifname)
        return launcher.NamespaceOptions(
            command=self.command, net_mode=net_mode, pidns=self.pidns, utsns=self.utsns, ipcns=self.ipcns,
            cgroupns=self.cgroupns, reaper=self.reaper, copy_up=self.copy_up, propagation=self.propagation,
            subid_source=self.subid_source, env=self.env, quiet=self.quiet,
            bind_etc=[sd.RESOLV_CONF, sd.HOSTS] if self.slirp else [], tap=tap)


def _check_pcap_path(path: str) -> None:
    if not path.strip():
        raise UserError("--pcap is empty: give a file to write the capture to")
    d = os.path.dirname(os.path.abspath(path)) or "/"
    if not os.path.isdir(d):
        raise UserError(f"--pcap {path}: directory {d} does not exist")
    if os.path.isdir(path):
        raise UserError(f"--pcap {path}: is a directory (give a file name)")
    if not os.access(d, os.W_OK | os.X_OK) and not os.access(path, os.W_OK):
        raise UserError(f"--pcap {path}: cannot write in {d}")


@dataclass
class Instance:
    """A running instance: its namespaces, engine, port driver and API."""

    opts: RunOptions
    ns: launcher.Namespaces
    engine: Any = None
    ports: Any = None  # the port driver

    # the namespaces' side, kept under the names callers use
    @property
    def state(self) -> sd.StateDir:
        return self.ns.state

    @property
    def process(self) -> launcher.ChildProcess:
        return self.ns.process

    @property
    def control(self):
        return self.ns.control

    @property
    def info(self) -> dict[str, Any]:
        return self.ns.info

    @property
    def child_pid(self) -> int:
        return self.ns.child_pid

    @property
    def state_dir(self) -> str:
        return self.ns.state_dir

    async def wait(self) -> int:
        return await self.ns.wait()

    def send_signal(self, signum: int) -> None:
        self.ns.send_signal(signum)

    def api_info(self) -> dict[str, Any]:
        """GET /v1/info, as rootlesskit API 1.1.1."""
        from rootlessnet import __version__

        out: dict[str, Any] = {"apiVersion": "1.1.1", "version": __version__, "stateDir": self.state_dir,
                               "childPID": self.child_pid}
        if self.engine is not None:
            cfg = self.engine.cfg
            dns = [str(ipaddress.ip_address(cfg.dns))] + ([str(ipaddress.ip_address(cfg.dns6))] if cfg.ipv6 else [])
            out["networkDriver"] = {"driver": "slirp4netns", "dns": dns, "childIP": str(ipaddress.ip_address(cfg.guest)),
                                    "dynamicChildIP": False}
        if self.ports is not None:
            protos = list(self.ports.protos)
            if self.ports.name == "slirp4netns":
                # As rootlesskit's slirp4netns driver: IPv4 only. Clients decide by this list, and
                # rootlesskit-docker-proxy puts the child side of every port on the guest's one IPv4
                # address: with tcp6 listed, Docker's `-p P:80` (0.0.0.0 and ::) would start two
                # proxies on 10.0.2.100:P and fail. POST /v1/ports still takes tcp6 (our extension).
                protos = [p for p in protos if not p.endswith("6")]
            out["portDriver"] = {"driver": self.ports.name, "protos": protos,
                                 "disallowLoopbackChildIP": self.ports.disallow_loopback_child_ip}
        if "sandbox" in self.info:  # an extension: what confines the launcher (docs/robustness.md)
            out["sandbox"] = self.info["sandbox"]
        return out

    def statistics(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if self.engine is not None:
            out["engine"] = self.engine.statistics()
        if self.ports is not None:
            out["ports"] = getattr(self.ports, "stats", {})
        return out


def load_dns_hosts(path: str | None) -> dict[str, list[str]] | None:
    """--dns-hosts FILE.json: {name: "addr" | ["addr", ...]}."""
    if path is None:
        return None
    import json

    try:
        with open(path) as f:
            table = json.load(f)
    except OSError as e:
        raise UserError(f"--dns-hosts {path}: {e.strerror}") from None
    except (ValueError, RecursionError) as e:
        raise UserError(f"--dns-hosts {path}: not JSON ({e})") from None
    if not isinstance(table, dict):
        raise UserError(f"--dns-hosts {path}: must be a JSON object {{name: address or [addresses]}}")
    out: dict[str, list[str]] = {}
    for name, addrs in table.items():
        addrs = [addrs] if isinstance(addrs, str) else addrs
        if not isinstance(addrs, list) or not all(isinstance(a, str) for a in addrs):
            raise UserError(f"--dns-hosts {path}: {name!r} must map to an address or a list of addresses")
        for a in addrs:
            try:
                ipaddress.ip_address(a)
            except ValueError:
                raise UserError(f"--dns-hosts {path}: {a!r} (for {name!r}) is not an IP address") from None
        out[name] = addrs
    return out


def host_nameserver() -> tuple[str, int] | None:
    """First nameserver of the host's resolv.conf (the engine lives in the host netns)."""
    try:
        with open("/etc/resolv.conf") as f:
            for line in f:
                parts = line.split()
                if len(parts) >= 2 and parts[0] == "nameserver":
                    return parts[1].split("%")[0], 53
    except OSError:
        pass
    return None


def resolv_conf_text(netcfg) -> str:
    lines = [f"nameserver {ipaddress.ip_address(netcfg.dns)}"]
    if netcfg.ipv6:
        lines.append(f"nameserver {ipaddress.ip_address(netcfg.dns6)}")
    return "\n".join(lines) + "\n"


def hosts_text(netcfg, hosts: list[str] = ()) -> str:
    import dataclasses

    name = socket.gethostname()
    out = (f"127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n"
           f"{ipaddress.ip_address(netcfg.guest)}\t{name}\n")
    for i, h in enumerate(hosts):
        hc = dataclasses.replace(netcfg, guest_index=101 + i)
        out += f"{ipaddress.ip_address(hc.guest)}\t{h}\n"
        if netcfg.ipv6:
            out += f"{ipaddress.ip_address(hc.guest6)}\t{h}\n"
    return out


def engine_log_files() -> list[str]:
    """Files the engine appends to by path after start (ROOTLESSNET_INTERNAL_ERROR_LOG), created if missing."""
    path = os.environ.get("ROOTLESSNET_INTERNAL_ERROR_LOG")
    if not path:
        return []
    try:
        os.close(os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o644))
    except OSError:
        return []
    return [os.path.abspath(path)]


def _warn(opts: RunOptions, text: str) -> None:
    if not opts.quiet:
        print(f"rootlessnet: warning: {text}", file=sys.stderr, flush=True)


def tap_parameters(opts: RunOptions, netcfg, **extra: Any) -> dict[str, Any]:
    """How the namespace child makes a tap for `netcfg` (ns/tap.py's parameters)."""
    return dict(mtu=opts.mtu, address=str(ipaddress.ip_address(netcfg.guest)), prefixlen=netcfg.cidr.prefixlen,
                gateway=str(ipaddress.ip_address(netcfg.gateway)), ipv6=opts.ipv6,
                address6=str(ipaddress.ip_address(netcfg.guest6)), vnet=opts.vnet_hdr, **extra)


async def _tap_request(inst: Instance, op: str, netcfg, **extra: Any) -> tuple[int, dict[str, Any]]:
    reply, fds = await inst.control.request(op, **tap_parameters(inst.opts, netcfg, **extra))
    if len(fds) != 1:
        for fd in fds:
            os.close(fd)
        raise UserError(f"the namespace child did not send the tap device ({op})")
    os.set_blocking(fds[0], False)
    return fds[0], reply


async def start_engine(inst: Instance, nursery: trio.Nursery) -> None:
    """--net=slirp: run the engine on the tap the namespace child made (NamespaceOptions.tap)."""
    import dataclasses

    from rootlessnet.io.engine import Engine

    opts = inst.opts
    netcfg = opts.net_config()
    try:
        fd, reply = inst.ns.take_tap()
    except ValueError as e:  # the child's reason, as one line
        raise UserError(f"cannot create the tap device {opts.ifname!r}: {e}") from None
    try:
        # held: the datapath's thread starts at go(), once this process is confined (Landlock before
        # ABI 8 restricts only the threads created after it)
        engine = Engine(netcfg, fd, vnet=reply["vnet"], offload=reply["offload"], pcap=opts.pcap,
                        warn=lambda text: _warn(opts, text), hold=True)
    except OSError as e:
        os.close(fd)
        raise UserError(engine_failure(e, "cannot start the network engine")) from None
    inst.engine = engine
    inst.info["vnet"] = reply["vnet"]
    inst.info["offload"] = reply["offload"]

    async def guarded() -> None:
        try:
            await engine.run()
        except Exception as e:  # noqa: BLE001 - one line naming the cause; a traceback only for a bug
            if not isinstance(e, (OSError, ExceptionGroup)):
                import traceback

                traceback.print_exc()
            raise UserError(engine_failure(e, "the network engine failed") + "; the command was stopped") from e

    nursery.start_soon(guarded)
    await engine.started.wait()
    for i, host in enumerate(opts.hosts):
        hc = dataclasses.replace(netcfg, guest_index=101 + i)
        try:
            fd, reply = await _tap_request(inst, "host_tap", hc, host=host)
        except Exception as e:  # noqa: BLE001
            raise UserError(f"cannot create host {host}: {e}") from None
        engine.add_host(host, hc, fd, vnet=reply["vnet"], offload=reply["offload"])


async def start_ports(inst: Instance, nursery: trio.Nursery) -> None:
    """The port driver and the -p ports (listening before child_pid is written)."""
    opts = inst.opts
    name = opts.port_driver_name
    if name == "builtin":
        from rootlessnet.port.builtin import BuiltinDriver

        gw = "10.0.2.2"
        limits = opts.net_config().limits if opts.slirp else None
        if inst.engine is not None:
            gw = str(ipaddress.ip_address(inst.engine.cfg.gateway))
            limits = inst.engine.cfg.limits
        udp_clients = limits.udp_clients if limits is not None else 1024
        inst.ports = BuiltinDriver(inst.control, nursery, gateway=gw, udp_clients=udp_clients)
    elif name == "slirp":
        from rootlessnet.port.slirp import SlirpPortDriver

        inst.ports = SlirpPortDriver(inst.engine)
    if inst.ports is not None:
        from rootlessnet.port.spec import PortError, parse_spec

        for p in opts.publish:
            try:
                await inst.ports.add(parse_spec(p))
            except PortError as e:
                raise UserError(f"-p {p}: {e}") from None
            except OSError as e:
                raise UserError(engine_failure(e, f"-p {p}")) from None


async def start_api(inst: Instance, nursery: trio.Nursery) -> None:
    """The REST API on STATE/api.sock (with the multi-host routes when there is an engine)."""
    from rootlessnet.api.server import serve_api

    ext = None
    if inst.engine is not None:
        from rootlessnet.api.network import NetworkApi

        ext = NetworkApi(inst.engine)
    await nursery.start(lambda task_status: serve_api(
        inst.state.file(sd.API_SOCK), info=inst.api_info, ports=inst.ports, stats=inst.statistics,
        extensions=ext, task_status=task_status))


def confine(inst: Instance) -> None:
    """Confine this process (it runs the engine, the port driver and the API) once the instance is set up.

    Writable afterwards: the state directory, the pcap file, the engine's
    internal-error log; removable: a temporary state directory and the
    copy-up staging directory (their parents get rmdir only). What applied
    goes to inst.info["sandbox"] (GET /v1/info). docs/robustness.md.
    """
    from rootlessnet.ns import confine as cf

    fs, sc = inst.opts.sandbox_modes()
    if fs == "false" and sc == "false":
        inst.info["sandbox"] = cf.Report().as_dict()
        return
    state = inst.state
    policy = cf.Policy(writable_dirs=[state.path], writable_files=engine_log_files(), landlock=fs, seccomp=sc)
    if inst.opts.pcap:
        policy.writable_files.append(os.path.abspath(inst.opts.pcap))
    if state.temporary:
        policy.remove_dirs_in.append(os.path.dirname(state.path))
    staging = inst.info.get("staging")
    if staging and os.path.basename(staging).startswith("rootlessnet-copyup-"):
        policy.remove_dirs_in.append(os.path.dirname(staging))
    try:
        report = cf.confine(policy)
    except cf.ConfineError as e:
        raise UserError(f"cannot confine the engine: {e} (--sandbox=auto applies what this kernel offers, "
                        "--sandbox=false nothing)") from None
    inst.info["sandbox"] = report.as_dict()
    probe = os.environ.get(SANDBOX_PROBE_ENV)
    if probe:
        import json

        want = json.loads(probe)
        state.write("sandbox-probe.json", json.dumps(cf.probe(want["write"], want["exec"])))


@dataclass
class Prepared:
    """An instance's first steps, taken before trio runs (`prepare`): its state directory,
    locked, and the namespace child, forked and setting itself up. `open_instance` adopts it."""

    opts: RunOptions
    state: sd.StateDir
    ns_opts: launcher.NamespaceOptions
    spawned: launcher.Spawned
    sigmask: set[int] | None = None  # the signal mask to restore once signals are received (run())
    adopted: bool = False

    def discard(self) -> None:
        """Undo it, unless open_instance took it over."""
        if not self.adopted:
            self.adopted = True
            try:
                self.spawned.discard()
            finally:
                self.state.release()


def prepare(opts: RunOptions) -> Prepared:
    """Check `opts`, take the state directory and fork the namespace child (no trio needed)."""
    opts.validate()
    state = sd.StateDir(opts.state_dir)
    state.acquire()
    try:
        netcfg = None
        if opts.slirp:
            netcfg = opts.net_config()
            state.write(sd.RESOLV_CONF, resolv_conf_text(netcfg))
            state.write(sd.HOSTS, hosts_text(netcfg, opts.hosts))
        ns_opts = opts.namespace_options(netcfg)
        spawned = launcher.spawn(ns_opts, state)
    except BaseException:
        state.release()
        raise
    return Prepared(opts, state, ns_opts, spawned)


@asynccontextmanager
async def open_instance(opts: RunOptions, prepared: Prepared | None = None) -> AsyncIterator[Instance]:
    """Start an instance; yields it running (command started, child_pid written); stops it on exit.

    `prepared` (from `prepare(opts)`, e.g. before trio was imported) is taken over."""
    if prepared is None:
        prepared = prepare(opts)
    prepared.adopted = True
    state = prepared.state
    try:
        holder: list[Instance] = []

        async def setup(ns: launcher.Namespaces, nursery: trio.Nursery) -> None:
            inst = Instance(opts, ns)
            holder.append(inst)
            if opts.slirp:
                await start_engine(inst, nursery)
                timing.phase("engine started")
            await start_ports(inst, nursery)
            if opts.api:
                await start_api(inst, nursery)
                timing.phase("API listening")
            confine(inst)  # before child_pid: whoever sees the instance ready sees it confined
            timing.phase("confined")
            if inst.engine is not None:
                inst.engine.go()

        async with launcher.open_namespaces(prepared.ns_opts, state, setup, prepared.spawned):
            yield holder[0]
    finally:
        state.release()


async def run_command(opts: RunOptions, prepared: Prepared | None = None) -> int:
    """`rootlessnet run`: start, forward signals, return the command's status."""
    import trio

    with trio.open_signal_receiver(*launcher.forwarded_signals()) as receiver:
        if prepared is not None and prepared.sigmask is not None:
            import signal  # held since before the fork (run()): those that came meanwhile are forwarded now

            signal.pthread_sigmask(signal.SIG_SETMASK, prepared.sigmask)
        async with open_instance(opts, prepared) as inst:
            code = await launcher.forward_until_exit(receiver, inst)
            timing.phase("command exited")
    timing.phase("instance stopped")
    return code


def import_for(opts: RunOptions) -> None:
    """Import what this instance will run, and nothing else (one timing line each)."""
    import trio  # noqa: F401

    timing.phase("imported trio")
    if opts.slirp:
        import resource  # noqa: F401 - the engine's, loaded late: out of fds, dlopen fails as an ImportError

        import rootlessnet.io.engine  # noqa: F401

        timing.phase("imported the engine")
    driver = opts.port_driver_name
    if driver == "builtin":
        import rootlessnet.port.builtin  # noqa: F401
    elif driver == "slirp":
        import rootlessnet.port.slirp  # noqa: F401
    if opts.publish:
        import rootlessnet.port.spec  # noqa: F401
    if opts.api:
        import rootlessnet.api.server  # noqa: F401

        if opts.slirp:
            import rootlessnet.api.network  # noqa: F401
    import rootlessnet.ns.confine  # noqa: F401 - confine() reports what applies, even when nothing does
    timing.phase("imported the port driver, API, confinement")


def run(opts: RunOptions) -> int:
    """`rootlessnet run` from a process of its own (the command line): the namespace child is
    forked first, and sets up while this process imports trio and the engine; then
    run_command under trio. Signals that arrive before trio listens are held, then forwarded."""
    import signal

    held = set(launcher.forwarded_signals())
    old = signal.pthread_sigmask(signal.SIG_BLOCK, held)
    try:
        prepared = prepare(opts)
    except BaseException:
        signal.pthread_sigmask(signal.SIG_SETMASK, old)
        raise
    prepared.sigmask = old
    try:
        import_for(opts)
        import trio

        return trio.run(run_command, opts, prepared)
    finally:
        prepared.discard()
        signal.pthread_sigmask(signal.SIG_SETMASK, old)
