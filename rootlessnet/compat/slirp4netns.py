"""compat.slirp4netns: `rootlessnet slirp4netns [OPTIONS] PID|PATH [TAPNAME]`, a drop-in for slirp4netns 1.2.

Tools that spawn slirp4netns (rootlesskit `--net=slirp4netns
--slirp4netns-binary=...`, scripts) get our engine instead. As slirp4netns
does, a helper process joins the target's user and network namespaces
(`--netns-type=pid`: /proc/PID/ns/{user,net}; `path`: the given netns file,
with `--userns-path`), opens TAPNAME there (rootlesskit creates it first; a
missing one is created), optionally configures it (`--configure`), and
passes the fd back over a socketpair (SCM_RIGHTS). The helper is a fork
taken before trio is imported (joining a user namespace needs a
single-threaded process; a fork is one), so it works while this process
imports the engine. The engine then runs here, in the caller's network
namespace.

Defaults are slirp4netns's, which differ from `rootlessnet run`: MTU 1500
and host loopback ENABLED (10.0.2.2 reaches the host's 127.0.0.1) unless
`--disable-host-loopback`. The ready fd gets "1" once the engine and the API
socket are up; we exit on the exit fd (readable or closed), SIGTERM/SIGINT/
SIGHUP, or when the tap goes away with its namespace. Flags we do not
implement are refused with one line, never ignored, and are absent from
`--help` (rootlesskit enables features by grepping it).

Also runnable as `python -m rootlessnet.compat.slirp4netns ARGS` (for wrapper scripts).
"""

from __future__ import annotations

import argparse
import errno
import fcntl
import inspect
import ipaddress
import os
import re
import signal
import socket
import struct
import sys
from dataclasses import dataclass

from rootlessnet import __version__
from rootlessnet.errors import UserError, engine_failure
from rootlessnet.ns import timing

PROG = "rootlessnet slirp4netns"
COMPAT_VERSION = "1.2.0"
HELPER_TIMEOUT = 30.0
TAP_CHECK_INTERVAL = 0.5
TUNGETIFF = 0x800454D2
SANDBOX_ENV = "ROOTLESSNET_SANDBOX"

HELP = f"""\
Usage: slirp4netns [OPTION]... PID|PATH [TAPNAME]
User-mode networking for unprivileged network namespaces
(rootlessnet {__version__}: slirp4netns {COMPAT_VERSION} command line on rootlessnet's engine).

-c, --configure          bring up the interface (address .100 of --cidr, default route via .2, MTU)
-e, --exit-fd=FD         specify the FD for terminating (exit when readable or closed)
-r, --ready-fd=FD        specify the FD to write to when the network is configured
-m, --mtu=MTU            specify MTU (default=1500, 1280..65520)
-6, --enable-ipv6        enable IPv6 (fd00::/64, gateway fd00::2, DNS fd00::3)
-a, --api-socket=PATH    specify API socket path (add_hostfwd, list_hostfwd, remove_hostfwd)
--cidr=CIDR              specify network address CIDR (default=10.0.2.0/24)
--disable-host-loopback  prohibit connecting to 127.0.0.1:* on the host namespace
--netns-type=TYPE        specify network namespace type ([path|pid], default=pid)
--userns-path=PATH       specify user namespace path
--disable-dns            disables 10.0.2.3 (or configured internal ip) to host dns redirect
--macaddress=MAC         specify the MAC address of the TAP (only valid with -c)
--target-type=netns      accepted for compatibility (netns is the only target type)
--outbound-addr=IPv4     sets outbound ipv4 address to bound to (or an interface name: its address)
--outbound-addr6=IPv6    sets outbound ipv6 address to bound to (or an interface name: its address)
--enable-sandbox         require filesystem confinement (Landlock: nothing writable but the API socket's removal)
--enable-seccomp         require the seccomp filter (syscalls the engine never needs fail with EPERM)
-h, --help               show this help and exit
rootlessnet extensions:
--dns-upstream=ADDR[:PORT]  DNS server behind 10.0.2.3 (default: first nameserver of /etc/resolv.conf)
--outbound=all|none|CIDR,...  host-side destinations the engine may connect to (default: all)
-v, --version            show version and exit
"""

# slirp4netns flags we do not implement: refused, with the reason
UNSUPPORTED = {
    "--create-sandbox": "the engine needs no sandbox mount namespace; run without it",
}

_MAC = re.compile(r"^[0-9a-fA-F]{2}(:[0-9a-fA-F]{2}){5}$")


@dataclass
class Options:
    target: str
    tapname: str = "tap0"
    configure: bool = False
    mtu: int = 1500
    cidr: str = "10.0.2.0/24"
    ipv6: bool = False
    host_loopback: bool = True
    dns: bool = True
    api_socket: str | None = None
    netns_type: str = "pid"
    userns_path: str | None = None
    ready_fd: int | None = None
    exit_fd: int | None = None
    macaddress: str | None = None
    # Confinement once the engine is up (docs/robustness.md): auto by default, as
    # for `rootlessnet run`; --enable-sandbox/--enable-seccomp make a part required;
    # ROOTLESSNET_SANDBOX=false (or true/auto) applies to both.
    sandbox_fs: str = "auto"
    sandbox_seccomp: str = "auto"
    outbound_addr: str | None = None  # host sockets bind to these (slirp4netns --outbound-addr[6])
    outbound_addr6: str | None = None
    dns_upstream: str | None = None  # rootlessnet extensions
    outbound: str = "all"

    def net_config(self):
        from rootlessnet.instance import RunOptions
        from rootlessnet.stack.config import ConfigError, NetConfig, parse_cidr, parse_outbound

        upstream = None
        if self.dns:
            upstream = RunOptions(["-"], dns_upstream=self.dns_upstream).dns_upstream_addr()
        try:
            return NetConfig(cidr=parse_cidr(self.cidr), mtu=self.mtu, ipv6=self.ipv6,
                             allow_host_loopback=self.host_loopback, outbound=parse_outbound(self.outbound),
                             dns_upstream=upstream, outbound_addr=self.outbound_addr,
                             outbound_addr6=self.outbound_addr6)
        except ConfigError as e:
            raise UserError(str(e)) from None

    def ns_paths(self) -> tuple[str | None, str]:
        """(user namespace to join or None, network namespace)."""
        if self.netns_type == "pid":
            return self.userns_path or f"/proc/{self.target}/ns/user", f"/proc/{self.target}/ns/net"
        return self.userns_path, self.target


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        raise UserError(f"{message} (see {PROG} --help)")


def _fd(text: str) -> int:
    if not text.isdigit():
        raise argparse.ArgumentTypeError(f"{text!r} is not a file descriptor number")
    return int(text)


def _build_parser() -> _Parser:
    p = _Parser(prog=PROG, add_help=False, allow_abbrev=True)
    p.add_argument("-c", "--configure", action="store_true")
    p.add_argument("-e", "--exit-fd", type=_fd)
    p.add_argument("-r", "--ready-fd", type=_fd)
    p.add_argument("-m", "--mtu", type=int, default=1500)
    p.add_argument("-6", "--enable-ipv6", action="store_true")
    p.add_argument("-a", "--api-socket")
    p.add_argument("--cidr", default="10.0.2.0/24")
    p.add_argument("--disable-host-loopback", action="store_true")
    p.add_argument("--netns-type", default="pid")
    p.add_argument("--userns-path")
    p.add_argument("--disable-dns", action="store_true")
    p.add_argument("--macaddress")
    p.add_argument("--target-type", default="netns")
    p.add_argument("--enable-sandbox", action="store_true")
    p.add_argument("--enable-seccomp", action="store_true")
    p.add_argument("--outbound-addr")
    p.add_argument("--outbound-addr6")
    p.add_argument("--dns-upstream")
    p.add_argument("--outbound", default="all")
    p.add_argument("-h", "--help", action="store_true")
    p.add_argument("-v", "--version", action="store_true")
    p.add_argument("target", nargs="?")
    p.add_argument("tapname", nargs="?", default="tap0")
    return p


def parse_args(argv: list[str]) -> Options | str:
    """Options, or the text to print for --help/--version; raises UserError."""
    for arg in argv:
        if arg == "--":
            break
        name = arg.split("=", 1)[0]
        if name in UNSUPPORTED:
            raise UserError(f"{name} is not supported: {UNSUPPORTED[name]}")
    a = _build_parser().parse_args(argv)
    if a.help:
        return HELP
    if a.version:
        return (f"slirp4netns version {COMPAT_VERSION} (rootlessnet {__version__})\n"
                f"rootlessnet: {__version__}\n")
    if a.target_type != "netns":
        raise UserError(f"--target-type={a.target_type} is not supported: only netns")
    if a.target is None:
        raise UserError(f"missing PID|PATH: use {PROG} [OPTION]... PID|PATH [TAPNAME]")
    if a.netns_type not in ("pid", "path"):
        raise UserError(f"--netns-type={a.netns_type}: use pid or path")
    if a.netns_type == "pid" and not (a.target.isdigit() and int(a.target) > 0):
        raise UserError(f"{a.target!r} is not a PID: give a process id, or --netns-type=path PATH")
    from rootlessnet.instance import IFNAME

    if not IFNAME.fullmatch(a.tapname) or a.tapname in ("lo", ".", ".."):
        raise UserError(f"TAPNAME {a.tapname!r}: use 1-15 letters, digits, '_', '.' or '-', not 'lo'")
    if a.macaddress is not None:
        if not a.configure:
            raise UserError("--macaddress needs -c/--configure")
        if not _MAC.match(a.macaddress) or int(a.macaddress[:2], 16) & 1:
            raise UserError(f"--macaddress {a.macaddress!r}: use a unicast MAC like 02:00:00:00:00:01")
    for flag, fd in (("--ready-fd", a.ready_fd), ("--exit-fd", a.exit_fd)):
        if fd is not None:
            try:
                os.fstat(fd)
            except OSError:
                raise UserError(f"{flag}={fd}: not an open file descriptor") from None
    env_mode = os.environ.get(SANDBOX_ENV, "auto")
    if env_mode not in ("auto", "true", "false"):
        raise UserError(f"{SANDBOX_ENV}={env_mode!r}: use auto, true or false")

    def mode(flag: bool) -> str:
        return "false" if env_mode == "false" else ("true" if flag else env_mode)

    opts = Options(target=a.target, tapname=a.tapname, configure=a.configure, mtu=a.mtu, cidr=a.cidr,
                   ipv6=a.enable_ipv6, host_loopback=not a.disable_host_loopback, dns=not a.disable_dns,
                   api_socket=a.api_socket, netns_type=a.netns_type, userns_path=a.userns_path,
                   ready_fd=a.ready_fd, exit_fd=a.exit_fd, macaddress=a.macaddress,
                   sandbox_fs=mode(a.enable_sandbox), sandbox_seccomp=mode(a.enable_seccomp),
                   outbound_addr=outbound_address(a.outbound_addr, 4) if a.outbound_addr is not None else None,
                   outbound_addr6=outbound_address(a.outbound_addr6, 6) if a.outbound_addr6 is not None else None,
                   dns_upstream=a.dns_upstream, outbound=a.outbound)
    if opts.outbound_addr6 and not opts.ipv6:
        raise UserError("--outbound-addr6 needs --enable-ipv6")
    opts.net_config()  # validates --mtu and --cidr
    return opts


def outbound_address(text: str, version: int) -> str:
    """--outbound-addr[6]=ADDRESS|INTERFACE: an address of this host (of that interface) we can bind to."""
    flag = "--outbound-addr" + ("6" if version == 6 else "")
    family = socket.AF_INET6 if version == 6 else socket.AF_INET
    try:
        ip = ipaddress.ip_address(text)
    except ValueError:
        ip = None
    if ip is None:
        addr = interface_address(text, version)
        if addr is None:
            raise UserError(f"{flag}={text}: neither an IPv{version} address nor an interface with one")
    elif ip.version != version:
        raise UserError(f"{flag}={text}: not an IPv{version} address")
    else:
        addr = str(ip)
    with socket.socket(family, socket.SOCK_DGRAM) as probe:
        try:
            probe.bind((addr, 0))
        except OSError as e:
            raise UserError(f"{flag}={text}: cannot bind to {addr} ({e.strerror}): use an address of this host") from None
    return addr


def interface_address(name: str, version: int) -> str | None:
    """The first IPv4 (SIOCGIFADDR) or IPv6 (/proc/net/if_inet6, global before link-local) address of `name`."""
    if version == 4:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            try:
                data = fcntl.ioctl(s, 0x8915, struct.pack("256s", name.encode()[:15]))  # SIOCGIFADDR
            except OSError:
                return None
        return socket.inet_ntoa(data[20:24])
    found = []
    try:
        with open("/proc/net/if_inet6") as f:
            for line in f:
                parts = line.split()
                if len(parts) == 6 and parts[5] == name:
                    addr = str(ipaddress.IPv6Address(bytes.fromhex(parts[0])))
                    found.append((int(parts[3], 16) == 0x20, addr))  # scope 0x20: link-local, last
    except OSError:
        return None
    return sorted(found)[0][1] if found else None


# -- the namespace helper (a fork: single-threaded) ------------------------------------------


def _helper(sock: socket.socket, cfg: dict) -> int:
    """In the fork: join the namespaces, open the tap, send its fd back; the exit status."""
    from rootlessnet.ns.control import send_msg

    try:
        reply, fds = _open_tap_in_ns(cfg)
    except UserError as e:
        send_msg(sock, {"ok": False, "error": str(e)})
        return 1
    except OSError as e:
        send_msg(sock, {"ok": False, "error": f"opening {cfg['tapname']} in the namespace failed: {e}"})
        return 1
    send_msg(sock, {"ok": True, **reply}, fds)
    return 0


def _open_ns(path: str, what: str) -> int:
    try:
        return os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError as e:
        raise UserError(f"cannot open the {what} namespace {path}: {e.strerror}") from None


def _open_tap_in_ns(cfg: dict) -> tuple[dict, list[int]]:
    from rootlessnet.ns import syscalls as sc

    userns, netns = cfg["userns"], cfg["netns"]
    ufd = _open_ns(userns, "user") if userns else None
    nfd = _open_ns(netns, "network")
    if ufd is not None:
        own = os.stat("/proc/self/ns/user")
        st = os.fstat(ufd)
        if (st.st_dev, st.st_ino) != (own.st_dev, own.st_ino):  # setns to our own userns is EINVAL
            try:
                sc.setns(ufd, sc.CLONE_NEWUSER)
            except OSError as e:
                raise UserError(f"cannot join the user namespace {userns}: {e.strerror} "
                                "(it must belong to this user; see also --userns-path)") from None
        os.close(ufd)
    try:
        sc.setns(nfd, sc.CLONE_NEWNET)
    except OSError as e:
        hint = "" if userns else " (give its user namespace with --userns-path)"
        raise UserError(f"cannot join the network namespace {netns}: {e.strerror}{hint}") from None
    os.close(nfd)

    from rootlessnet.ns.tap import TapConfig, open_tap

    name = cfg["tapname"]
    config = None
    if cfg["configure"]:
        from rootlessnet.ns.netdev import set_link_up

        set_link_up("lo")
        config = TapConfig(mtu=cfg["mtu"], address=cfg["address"], prefixlen=cfg["prefixlen"], gateway=cfg["gateway"],
                           ipv6=cfg["ipv6"], mac=cfg.get("macaddress"))
    fd, vnet, offload = open_tap(name, vnet=cfg.get("vnet", True), offload=True, config=config)
    return {"vnet": vnet, "offload": offload}, [fd]


class TapHelper:
    """The helper, forked at once; `result()` waits for the tap it sends."""

    def __init__(self, opts: Options, netcfg):
        userns, netns = opts.ns_paths()
        cfg = {"userns": userns, "netns": netns, "tapname": opts.tapname, "configure": opts.configure,
               "macaddress": opts.macaddress, "mtu": opts.mtu, "address": str(ipaddress.ip_address(netcfg.guest)),
               "prefixlen": netcfg.cidr.prefixlen, "gateway": str(ipaddress.ip_address(netcfg.gateway)),
               "ipv6": opts.ipv6, "vnet": os.environ.get("ROOTLESSNET_NO_VNET_HDR") != "1"}
        self.sock, child = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        for f in (sys.stdout, sys.stderr):
            f.flush()
        try:
            self.pid = os.fork()
        except BaseException:
            self.sock.close()
            child.close()
            raise
        if self.pid == 0:  # nothing may return from here into the caller's stack
            code = 1
            try:
                self.sock.close()
                code = _helper(child, cfg)
            except BaseException:  # noqa: BLE001 - a bug: its traceback
                import traceback

                os.write(2, traceback.format_exc().encode())
            os._exit(code)
        child.close()

    def result(self) -> tuple[int, bool, bool]:
        """(tap fd, vnet header, offloads)."""
        from rootlessnet.ns.control import recv_msg

        with self.sock:
            try:
                self.sock.settimeout(HELPER_TIMEOUT)
                try:
                    msg, fds = recv_msg(self.sock)
                except socket.timeout:
                    raise UserError(f"the namespace helper did not answer in {HELPER_TIMEOUT:.0f} s") from None
            finally:
                status = self._reap()
        if msg is None:
            raise UserError(f"the namespace helper exited (status {status}) without sending the tap")
        if not msg.get("ok"):
            for fd in fds:
                os.close(fd)
            raise UserError(msg.get("error", "the namespace helper failed"))
        if len(fds) != 1:
            for fd in fds:
                os.close(fd)
            raise UserError("the namespace helper did not send the tap device")
        os.set_blocking(fds[0], False)
        return fds[0], bool(msg["vnet"]), bool(msg["offload"])

    def _reap(self) -> int | None:
        """Its exit status (it exits right after sending); killed if it hangs."""
        import time

        deadline = time.monotonic() + HELPER_TIMEOUT
        while True:
            pid, status = os.waitpid(self.pid, os.WNOHANG)
            if pid == self.pid:
                return os.waitstatus_to_exitcode(status)
            if time.monotonic() > deadline:
                os.kill(self.pid, signal.SIGKILL)
                _, status = os.waitpid(self.pid, 0)
                return os.waitstatus_to_exitcode(status)
            time.sleep(0.001)


def get_tap(opts: Options, netcfg) -> tuple[int, bool, bool]:
    """Run the helper; (tap fd, vnet header, offloads)."""
    return TapHelper(opts, netcfg).result()


# -- the engine side (trio) --------------------------------------------------------------------


def import_for(opts: Options) -> None:
    """What serve() will run, imported while the helper opens the tap (one timing line each)."""
    import trio  # noqa: F401

    timing.phase("imported trio")
    import resource  # noqa: F401 - the engine's, loaded late: out of fds, dlopen fails as an ImportError

    import rootlessnet.io.engine  # noqa: F401

    timing.phase("imported the engine")
    import rootlessnet.port.slirp  # noqa: F401

    if opts.api_socket:
        import rootlessnet.compat.slirp4netns_api  # noqa: F401
    if (opts.sandbox_fs, opts.sandbox_seccomp) != ("false", "false"):
        import rootlessnet.ns.confine  # noqa: F401
    timing.phase("imported the port driver, API, confinement")


def make_driver(engine):
    from rootlessnet.port.slirp import SlirpPortDriver

    return SlirpPortDriver(engine)


def tap_gone(fd: int) -> bool:
    """Whether the tap's device was destroyed (its namespace exited): TUNGETIFF fails with EBADFD."""
    try:
        fcntl.ioctl(fd, TUNGETIFF, struct.pack("16sH", b"", 0) + bytes(22))
    except OSError as e:
        return e.errno in (errno.EBADFD, errno.EBADF, errno.ENODEV)
    return False


def confine(opts: Options):
    """Confine this process once the engine and the API socket are up (before --ready-fd says so).

    Nothing stays writable but the engine's internal-error log; the API
    socket's directory allows unlinking (we remove the socket at exit).
    """
    from rootlessnet.ns import confine as cf
    from rootlessnet.instance import engine_log_files

    policy = cf.Policy(writable_files=engine_log_files(), landlock=opts.sandbox_fs, seccomp=opts.sandbox_seccomp)
    if opts.api_socket:
        policy.remove_files_in.append(os.path.dirname(os.path.abspath(opts.api_socket)))
    try:
        return cf.confine(policy)
    except cf.ConfineError as e:
        part = "sandbox" if str(e).startswith("filesystem") else "seccomp"
        raise UserError(f"--enable-{part}: cannot confine the engine: {e} (run without --enable-{part}; "
                        f"rootlesskit: --slirp4netns-{part}=false)") from None


def _notify_ready(fd: int) -> None:
    try:
        os.write(fd, b"1")
    except OSError as e:
        print(f"{PROG}: warning: writing to --ready-fd={fd} failed: {e.strerror}", file=sys.stderr, flush=True)
    finally:
        os.close(fd)


async def serve(opts: Options, netcfg, tap_fd: int, vnet: bool, offload: bool) -> int:
    """Run the engine (and API socket) until told to stop; the exit status."""
    import trio

    from rootlessnet.compat import slirp4netns_api as api
    from rootlessnet.io.engine import Engine

    engine = Engine(netcfg, tap_fd, vnet=vnet, offload=offload, hold=True,  # its thread starts once confined
                    warn=lambda text: print(f"{PROG}: warning: {text}", file=sys.stderr, flush=True))
    api_sock = None
    if opts.api_socket:
        try:
            api_sock = api.bind_socket(opts.api_socket)
        except OSError as e:
            os.close(tap_fd)
            raise UserError(f"--api-socket {opts.api_socket}: {e.strerror or e}") from None
    driver = make_driver(engine)
    stop_reason = ""
    with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT, signal.SIGHUP) as signals:
        try:
            async with trio.open_nursery() as nursery:
                stopping = trio.Event()
                api_scope = trio.CancelScope()

                def stop(reason: str) -> None:
                    nonlocal stop_reason
                    stop_reason = stop_reason or reason
                    stopping.set()

                async def run_engine() -> None:
                    try:
                        await engine.run()
                    except Exception as e:  # noqa: BLE001 - one line naming the cause; a traceback only for a bug
                        if not isinstance(e, (OSError, ExceptionGroup)):
                            import traceback

                            traceback.print_exc()
                        raise UserError(engine_failure(e, "the network engine failed")) from e

                async def watch_signals() -> None:
                    async for signum in signals:
                        stop(signal.Signals(signum).name)

                async def watch_exit_fd(fd: int) -> None:
                    try:
                        await trio.lowlevel.wait_readable(fd)
                    except OSError:
                        pass  # not pollable (a regular file is always "readable"): exit as slirp4netns would
                    stop("exit-fd")

                async def watch_tap() -> None:
                    while not tap_gone(tap_fd):
                        await trio.sleep(TAP_CHECK_INTERVAL)
                    print(f"{PROG}: {opts.tapname} was deleted: exiting", file=sys.stderr, flush=True)
                    stop("the tap device is gone")

                async def serve_api(task_status=trio.TASK_STATUS_IGNORED) -> None:
                    with api_scope:
                        await api.serve(api.ApiHandler(driver, str(ipaddress.ip_address(netcfg.guest))), api_sock,
                                        task_status=task_status)

                nursery.start_soon(run_engine)
                await engine.started.wait()
                nursery.start_soon(watch_signals)
                nursery.start_soon(watch_tap)
                if opts.exit_fd is not None:
                    nursery.start_soon(watch_exit_fd, opts.exit_fd)
                if api_sock is not None:
                    await nursery.start(serve_api)
                confine(opts)
                engine.go()
                timing.phase("engine running, confined")
                if opts.ready_fd is not None:
                    _notify_ready(opts.ready_fd)
                await stopping.wait()
                # In order, while the engine still runs: no new API requests, then the forwarded
                # ports leave the engine (closing them after it would touch its closed epoll).
                api_scope.cancel()
                with trio.CancelScope(shield=True), trio.move_on_after(5):
                    await _close_driver(driver)
                nursery.cancel_scope.cancel()
        finally:
            if opts.api_socket and api_sock is not None:
                try:
                    os.unlink(opts.api_socket)
                except OSError:
                    pass
    return 0


async def _close_driver(driver) -> None:
    close = getattr(driver, "aclose", None) or getattr(driver, "close", None)
    if callable(close):
        result = close()
        if inspect.isawaitable(result):
            await result


def main(argv: list[str]) -> int:
    try:
        parsed = parse_args(argv)
        if isinstance(parsed, str):
            sys.stdout.write(parsed)
            sys.stdout.flush()
            return 0
        opts = parsed
        netcfg = opts.net_config()
        timing.phase("flags parsed")
        helper = TapHelper(opts, netcfg)  # forked before trio: it opens the tap while we import
        timing.phase("namespace helper forked")
        import_for(opts)
        tap_fd, vnet, offload = helper.result()
        timing.phase("tap received")
        import trio

        return trio.run(serve, opts, netcfg, tap_fd, vnet, offload)
    except KeyboardInterrupt:
        return 130
    except BaseException as e:  # noqa: BLE001 - unwrap nursery exception groups
        from rootlessnet.errors import find_user_error

        err = find_user_error(e)
        if err is None:
            raise
        print(f"{PROG}: {err}", file=sys.stderr, flush=True)
        return err.exit_code


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
