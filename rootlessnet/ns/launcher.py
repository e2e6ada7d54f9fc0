"""The launcher's parent side: spawn the namespace child, map ids, report ready.

`open_instance(opts)` is an async context manager (trio) that yields a
running `Instance` once the command has been started and `child_pid` is
written; leaving it kills what is left and releases the state directory.
Later layers (the engine, port drivers, the API) plug in through
`PARENT_HOOKS`, which run after the namespaces exist and before `child_pid`
is written. Then, as opts.sandbox says, the process confines itself
(ns/confine.py: no_new_privs, Landlock, seccomp), still before `child_pid`.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import sys
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any, AsyncIterator, Awaitable, Callable

import trio

from rootlessnet.errors import UserError
from rootlessnet.ns import idmap
from rootlessnet.ns import statedir as sd
from rootlessnet.ns.control import AsyncControl
from rootlessnet.ns.syscalls import PROPAGATION

NETS = ("slirp", "slirp4netns", "none", "host")
PORT_DRIVERS = ("builtin", "slirp", "none")
REAPERS = ("auto", "true", "false")
SANDBOX_MODES = ("auto", "true", "false")
SANDBOX_PROBE_ENV = "ROOTLESSNET_SANDBOX_PROBE"  # tests: {"write": PATH, "exec": EMPTY_FILE} -> STATE/sandbox-probe.json
SETUP_TIMEOUT = 60.0
NOT_FORWARDED = {signal.SIGCHLD, signal.SIGPIPE, signal.SIGURG, signal.SIGKILL, signal.SIGSTOP}


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

    def net_config(self):
        """The engine's NetConfig (raises UserError for bad values)."""
        from rootlessnet.stack.config import ConfigError, Limits, NetConfig, parse_cidr, parse_hostport, parse_outbound

        try:
            limits = Limits()
            for text in self.limits:
                limits = limits.with_text(text)
            upstream = parse_hostport(self.dns_upstream) if self.dns_upstream else _host_nameserver()
            dns_hosts = self.dns_hosts
            if dns_hosts is not None and self.hosts:
                cidr = parse_cidr(self.cidr)
                dns_hosts = {**dns_hosts, **{h: [str(cidr.network_address + 101 + i)] for i, h in enumerate(self.hosts)}}
            return NetConfig(cidr=parse_cidr(self.cidr), mtu=self.mtu, ipv6=self.ipv6,
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
        for flag, value in (("--sandbox", self.sandbox), ("--slirp4netns-sandbox", self.sandbox_fs),
                            ("--slirp4netns-seccomp", self.sandbox_seccomp)):
            if value is not None and value not in SANDBOX_MODES:
                raise UserError(f"unknown {flag} {value!r}: use one of {', '.join(SANDBOX_MODES)}")
        if self.propagation not in PROPAGATION:
            raise UserError(f"unknown --propagation {self.propagation!r}: use one of {', '.join(PROPAGATION)}")
        if self.detach_netns and self.net == "host":
            raise UserError("--detach-netns needs a network namespace: use it with --net=none (or slirp), not --net=host")
        if len(self.ifname.encode()) > 15 or not self.ifname or "/" in self.ifname:
            raise UserError(f"--ifname {self.ifname!r}: use a name of 1-15 characters")
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
        from rootlessnet.port.spec import SpecError, parse_spec

        for p in self.publish:
            try:
                parse_spec(p)
            except SpecError as e:
                raise UserError(f"-p {p}: {e}") from None
        for d in self.copy_up:
            if not os.path.isabs(d) or not os.path.isdir(d):
                raise UserError(f"--copy-up={d}: not an absolute path to an existing directory")


class ChildProcess:
    """The namespace child, spawned from the calling thread and awaited through a pidfd.

    Not `trio.lowlevel.open_process`: that calls Popen on a worker thread, and
    the child's parent-death signal fires when the thread that forked it exits
    (PR_SET_PDEATHSIG is per thread) — trio retires idle worker threads after
    10 s, which would kill every instance 10 s after it started.
    """

    def __init__(self, argv: list[str], pass_fds: tuple[int, ...]):
        import subprocess

        self._popen = subprocess.Popen(argv, pass_fds=pass_fds)
        self.pid = self._popen.pid
        self._pidfd = os.pidfd_open(self.pid)

    @property
    def returncode(self) -> int | None:
        return self._popen.returncode

    async def wait(self) -> int:
        if self._popen.returncode is None:
            if self._pidfd >= 0:
                await trio.lowlevel.wait_readable(self._pidfd)
            self._popen.wait()
            self._close_pidfd()
        return self._popen.returncode

    def _close_pidfd(self) -> None:
        if self._pidfd >= 0:
            trio.lowlevel.notify_closing(self._pidfd)
            os.close(self._pidfd)
            self._pidfd = -1

    def kill(self) -> None:
        if self._popen.returncode is None:
            self._popen.kill()

    def send_signal(self, signum: int) -> None:
        if self._popen.returncode is None:
            self._popen.send_signal(signum)


@dataclass
class Instance:
    """A running instance, as the parent sees it."""

    opts: RunOptions
    state: sd.StateDir
    process: ChildProcess
    control: AsyncControl
    info: dict[str, Any] = field(default_factory=dict)
    engine: Any = None
    ports: Any = None  # the port driver

    def api_info(self) -> dict[str, Any]:
        """GET /v1/info, as rootlesskit API 1.1.1."""
        import ipaddress

        from rootlessnet import __version__

        out: dict[str, Any] = {"apiVersion": "1.1.1", "version": __version__, "stateDir": self.state_dir,
                               "childPID": self.child_pid}
        if self.engine is not None:
            cfg = self.engine.cfg
            dns = [str(ipaddress.ip_address(cfg.dns))] + ([str(ipaddress.ip_address(cfg.dns6))] if cfg.ipv6 else [])
            out["networkDriver"] = {"driver": "slirp4netns", "dns": dns, "childIP": str(ipaddress.ip_address(cfg.guest)),
                                    "dynamicChildIP": False}
        if self.ports is not None:
            out["portDriver"] = {"driver": self.ports.name, "protos": list(self.ports.protos),
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

    @property
    def child_pid(self) -> int:
        return self.process.pid

    @property
    def state_dir(self) -> str:
        return self.state.path

    async def wait(self) -> int:
        """Wait for the command; its exit status (128+N for signal N)."""
        rc = await self.process.wait()
        return 128 - rc if rc < 0 else rc

    def send_signal(self, signum: int) -> None:
        """Forward a signal to the command (through the child)."""
        try:
            os.kill(self.process.pid, signum)
        except ProcessLookupError:
            pass


ParentHook = Callable[[Instance, trio.Nursery], Awaitable[None]]
PARENT_HOOKS: list[tuple[str, ParentHook]] = []


def _host_nameserver() -> tuple[str, int] | None:
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


def _resolv_conf(netcfg) -> str:
    import ipaddress

    lines = [f"nameserver {ipaddress.ip_address(netcfg.dns)}"]
    if netcfg.ipv6:
        lines.append(f"nameserver {ipaddress.ip_address(netcfg.dns6)}")
    return "\n".join(lines) + "\n"


def _hosts(netcfg, hosts: list[str] = ()) -> str:
    import dataclasses
    import ipaddress
    import socket as _s

    name = _s.gethostname()
    out = (f"127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n"
           f"{ipaddress.ip_address(netcfg.guest)}\t{name}\n")
    for i, h in enumerate(hosts):
        hc = dataclasses.replace(netcfg, guest_index=101 + i)
        out += f"{ipaddress.ip_address(hc.guest)}\t{h}\n"
        if netcfg.ipv6:
            out += f"{ipaddress.ip_address(hc.guest6)}\t{h}\n"
    return out


async def start_engine(inst: "Instance", nursery: trio.Nursery) -> None:
    """--net=slirp: get the tap from the child and run the engine on it."""
    import ipaddress

    from rootlessnet.io.engine import Engine

    opts = inst.opts
    netcfg = opts.net_config()
    reply, fds = await inst.control.request(
        "tap", name=opts.ifname, mtu=opts.mtu, address=str(ipaddress.ip_address(netcfg.guest)),
        prefixlen=netcfg.cidr.prefixlen, gateway=str(ipaddress.ip_address(netcfg.gateway)), ipv6=opts.ipv6,
        address6=str(ipaddress.ip_address(netcfg.guest6)), vnet=opts.vnet_hdr)
    if len(fds) != 1:
        raise UserError("the namespace child did not send the tap device")
    os.set_blocking(fds[0], False)
    engine = Engine(netcfg, fds[0], vnet=reply["vnet"], offload=reply["offload"], pcap=opts.pcap,
                    warn=lambda text: _warn(opts, text), hold=True)  # its thread starts once confined
    inst.engine = engine
    inst.info["vnet"] = reply["vnet"]
    inst.info["offload"] = reply["offload"]

    async def guarded() -> None:
        try:
            await engine.run()
        except Exception as e:  # noqa: BLE001 - report once, then stop the instance
            import traceback

            traceback.print_exc()
            raise UserError(f"the network engine failed ({type(e).__name__}: {e}); the command was stopped") from e

    nursery.start_soon(guarded)
    await engine.started.wait()
    import dataclasses

    for i, host in enumerate(opts.hosts):
        hc = dataclasses.replace(netcfg, guest_index=101 + i)
        reply, fds = await inst.control.request(
            "host_tap", host=host, mtu=opts.mtu, address=str(ipaddress.ip_address(hc.guest)),
            prefixlen=hc.cidr.prefixlen, gateway=str(ipaddress.ip_address(hc.gateway)), ipv6=opts.ipv6,
            address6=str(ipaddress.ip_address(hc.guest6)), vnet=opts.vnet_hdr)
        if len(fds) != 1:
            raise UserError(f"the namespace child did not send the tap of host {host}")
        os.set_blocking(fds[0], False)
        engine.add_host(host, hc, fds[0], vnet=reply["vnet"], offload=reply["offload"])


async def start_ports(inst: "Instance", nursery: trio.Nursery) -> None:
    """The port driver, the -p ports (listening before child_pid is written) and api.sock."""
    opts = inst.opts
    name = opts.port_driver_name
    if name == "builtin":
        from rootlessnet.port.builtin import BuiltinDriver

        gw = "10.0.2.2"
        if inst.engine is not None:
            import ipaddress

            gw = str(ipaddress.ip_address(inst.engine.cfg.gateway))
        udp_clients = inst.engine.cfg.limits.udp_clients if inst.engine is not None else opts.net_config().limits.udp_clients
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
    if opts.api:
        try:
            from rootlessnet.api.server import serve_api
        except ImportError:
            return
        ext = None
        if inst.engine is not None:
            from rootlessnet.io.engine import NetworkApi

            ext = NetworkApi(inst.engine)
        await nursery.start(lambda task_status: serve_api(
            inst.state.file(sd.API_SOCK), info=inst.api_info, ports=inst.ports, stats=inst.statistics,
            extensions=ext, task_status=task_status))


def _child_argv(fd: int) -> list[str]:
    pkg_parent = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    code = f"import sys; sys.path.insert(0, {pkg_parent!r}); from rootlessnet.ns.child import main; main()"
    return [sys.executable, "-c", code, str(fd)]


def _warn(opts: RunOptions, text: str) -> None:
    if not opts.quiet:
        print(f"rootlessnet: warning: {text}", file=sys.stderr, flush=True)


async def _run_in_own_thread(fn: Callable[..., Any], *args: Any) -> Any:
    """trio.to_thread.run_sync in a thread that is gone when this returns.

    trio keeps idle worker threads for 10 s, and Landlock before ABI 8
    restricts only the thread that asks: the launcher must be single-threaded
    when it confines itself. Not cancellable, like to_thread's default.
    """
    import threading

    import outcome

    token = trio.lowlevel.current_trio_token()
    done = trio.Event()
    box: list[Any] = []

    def body() -> None:
        box.append(outcome.capture(fn, *args))
        token.run_sync_soon(done.set)

    thread = threading.Thread(target=body, name="rootlessnet-idmap", daemon=True)
    thread.start()
    with trio.CancelScope(shield=True):
        await done.wait()
    thread.join()
    return box[0].unwrap()


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


def _confine(inst: Instance) -> None:
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


async def _bootstrap(inst: Instance, plan: idmap.MapPlan, cfg: dict[str, Any]) -> None:
    ctl = inst.control
    await ctl.send({"type": "config", "config": cfg})

    async def expect(kind: str) -> dict[str, Any]:
        msg, fds = await ctl.recv()
        for fd in fds:
            os.close(fd)
        if msg is None:
            rc = await inst.process.wait()
            raise UserError(f"the namespace child exited during set-up (status {rc})")
        if msg.get("type") == "error":
            raise UserError(msg.get("message", "namespace set-up failed"))
        if msg.get("type") != kind:
            raise UserError(f"namespace set-up: unexpected message {msg.get('type')!r}")
        return msg

    await expect("unshared")
    if plan.single:
        await ctl.send({"type": "map", "self": True})
    else:
        await _run_in_own_thread(idmap.apply_helpers, plan, inst.process.pid)
        await ctl.send({"type": "map", "self": False})
    inst.info.update(await expect("ready"))


@asynccontextmanager
async def open_instance(opts: RunOptions) -> AsyncIterator[Instance]:
    opts.validate()
    plan = idmap.plan_maps(opts.subid_source)
    if plan.warning:
        _warn(opts, plan.warning)
    state = sd.StateDir(opts.state_dir)
    state.acquire()
    try:
        env = {
            "ROOTLESSKIT_STATE_DIR": state.path,
            "ROOTLESSNET_STATE_DIR": state.path,
            "ROOTLESSKIT_PARENT_EUID": str(os.geteuid()),
            "ROOTLESSKIT_PARENT_EGID": str(os.getegid()),
            **opts.env,
        }
        cfg = {
            "parent_pid": os.getpid(),
            "uid": os.getuid(),
            "gid": os.getgid(),
            "state_dir": state.path,
            "command": opts.command,
            "env": env,
            "net": opts.net,
            "detach_netns": opts.detach_netns,
            "pidns": opts.pidns,
            "utsns": opts.utsns,
            "ipcns": opts.ipcns,
            "cgroupns": opts.cgroupns,
            "reaper": opts.reaper,
            "copy_up": [os.path.abspath(d) for d in opts.copy_up],
            "propagation": opts.propagation,
            "bind_etc": [],
        }
        if opts.slirp:
            netcfg = opts.net_config()
            state.write(sd.RESOLV_CONF, _resolv_conf(netcfg))
            state.write(sd.HOSTS, _hosts(netcfg, opts.hosts))
            if not opts.detach_netns:
                cfg["bind_etc"] = [sd.RESOLV_CONF, sd.HOSTS]
        parent_sock, child_sock = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        try:
            process = ChildProcess(_child_argv(child_sock.fileno()), pass_fds=(child_sock.fileno(),))
        finally:
            child_sock.close()
        inst = Instance(opts, state, process, AsyncControl(parent_sock))
        try:
            with trio.move_on_after(SETUP_TIMEOUT) as timeout:
                await _bootstrap(inst, plan, cfg)
            if timeout.cancelled_caught:
                raise UserError(f"namespace set-up did not finish in {SETUP_TIMEOUT:.0f} s")
            async with trio.open_nursery() as nursery:
                nursery.start_soon(inst.control.serve)
                if opts.slirp:
                    await start_engine(inst, nursery)
                await start_ports(inst, nursery)
                for _name, hook in PARENT_HOOKS:
                    await hook(inst, nursery)
                _confine(inst)  # before child_pid: whoever sees the instance ready sees it confined
                if inst.engine is not None:
                    inst.engine.go()  # the datapath thread, created confined
                state.write(sd.CHILD_PID, f"{process.pid}\n")
                await inst.control.request("start")
                try:
                    yield inst
                finally:
                    nursery.cancel_scope.cancel()
        finally:
            if process.returncode is None:
                process.kill()
                with trio.CancelScope(shield=True):
                    await process.wait()
            inst.control.sock.close()
            staging = inst.info.get("staging")
            if staging and os.path.basename(staging).startswith("rootlessnet-copyup-"):
                try:
                    os.rmdir(staging)  # empty outside the instance's mount namespace
                except OSError:
                    pass
    finally:
        state.release()


async def run_command(opts: RunOptions) -> int:
    """`rootlessnet run`: start, forward signals, return the command's status."""
    sigs = [s for s in signal.valid_signals() if s not in NOT_FORWARDED]
    with trio.open_signal_receiver(*_catchable(sigs)) as receiver:
        async with open_instance(opts) as inst:
            async with trio.open_nursery() as nursery:

                async def pump() -> None:
                    async for signum in receiver:
                        inst.send_signal(signum)

                nursery.start_soon(pump)
                code = await inst.wait()
                nursery.cancel_scope.cancel()
    return code


def _catchable(sigs: list[int]) -> list[int]:
    out = []
    for s in sigs:
        try:
            signal.getsignal(s)
            out.append(s)
        except (ValueError, OSError):
            pass
    # SIGTTIN/SIGTTOU/SIGTSTP stop the launcher by default; forwarding them is what users expect
    return out
