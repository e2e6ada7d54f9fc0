"""The Linux DUT's namespaces: run inside ``unshare -Urn`` by ``dut.LinuxDut``.

The namespace ``unshare`` made is the DUT's: it owns ``veth1`` (10.0.2.2/24
with the engine's gateway MAC, MTU 65520 like the engine's tap0, a permanent
neighbour entry for the bench's address so it never ARPs) and runs the
application's sockets. The other end, ``veth0``, is moved into a second
namespace of its own (the bench's side: no address, so no kernel answers on
it), where the bench's packet socket is made. The helper reports ``ready``,
then makes sockets on request and passes them back (SCM_RIGHTS) until the
channel closes. TCP sysctls are the kernel's defaults for a new namespace but
for tcp_no_metrics_save=1 (see below); IPv6 is off on both sides, so no router
solicitations, DAD or MLD frames reach the bench.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys

MAX_LIFETIME = 1800  # seconds: the helper never outlives a forgotten bench
ETH_P_ALL = 3

SETUP = [
    "ip link set lo up",
    "ip link add veth0 mtu 65520 type veth peer name veth1 mtu 65520",
    "ip link set veth1 address 52:55:00:00:00:02",
    "ip addr add 10.0.2.2/24 dev veth1",
    "ip link set veth1 up",
    "ip neigh replace 10.0.2.50 lladdr 02:00:00:00:00:50 dev veth1 nud permanent",
]


def _sysctl(path: str, value: str) -> None:
    with open(path, "w") as f:
        f.write(value)


def _run(cmd: str) -> None:
    subprocess.run(cmd.split(), check=True, capture_output=True, text=True, timeout=30)


def _no_ipv6() -> None:
    for conf in ("all", "default"):
        _sysctl(f"/proc/sys/net/ipv6/conf/{conf}/disable_ipv6", "1")


def bench_side(ctl: socket.socket) -> None:
    """In a fork: a network namespace of its own for veth0; hands its packet socket back.

    The socket keeps the namespace (and veth0 in it) alive after this process exits."""
    from rootlessnet.ns import syscalls as sc
    from rootlessnet.ns.control import recv_msg, send_msg

    try:
        sc.unshare(sc.CLONE_NEWNET)
        _no_ipv6()
        send_msg(ctl, {"pid": os.getpid()})
        msg, _ = recv_msg(ctl)  # the parent moved veth0 here
        if msg is None:
            os._exit(1)
        _run("ip link set lo up")
        _run("ip link set veth0 up")
        s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
        send_msg(ctl, {"ok": True}, [s.fileno()])
    except BaseException as e:  # noqa: BLE001 - reported to the parent
        err = getattr(e, "stderr", "") or str(e)
        try:
            send_msg(ctl, {"ok": False, "error": f"bench namespace: {err.strip()}"})
        except OSError:
            pass
        os._exit(1)
    os._exit(0)


def setup() -> socket.socket:
    """The DUT's namespace (this one) and the bench's (a fork's); returns the bench's packet socket."""
    from rootlessnet.ns.control import recv_msg, send_msg

    _no_ipv6()
    # Each connection starts afresh, as the engine's do: no RTT/ssthresh cached per destination
    # from earlier scenarios (tcp_init_metrics would otherwise skip RFC 6298's 3 s fallback).
    _sysctl("/proc/sys/net/ipv4/tcp_no_metrics_save", "1")
    for cmd in SETUP:
        _run(cmd)
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    pid = os.fork()
    if pid == 0:
        ours.close()
        bench_side(theirs)
    theirs.close()
    try:
        ours.settimeout(30)
        msg, _ = recv_msg(ours)
        if msg is None or "pid" not in msg:
            raise OSError("the bench's namespace helper failed to start")
        _run(f"ip link set veth0 netns {msg['pid']}")
        send_msg(ours, {"moved": True})
        msg, fds = recv_msg(ours)
        if msg is None or not msg.get("ok") or len(fds) != 1:
            raise OSError((msg or {}).get("error", "the bench's namespace helper failed"))
        return socket.socket(fileno=fds[0])
    finally:
        ours.close()
        os.waitpid(pid, 0)


def main() -> None:
    from rootlessnet.ns.control import recv_msg, send_msg

    sock = socket.socket(fileno=int(sys.argv[1]))
    signal.alarm(MAX_LIFETIME)
    try:
        packet = setup()
    except (OSError, subprocess.SubprocessError) as e:
        err = getattr(e, "stderr", "") or str(e)
        send_msg(sock, {"type": "error", "message": f"Linux DUT set-up failed: {err.strip()}"})
        return
    send_msg(sock, {"type": "ready"})
    while True:
        msg, fds = recv_msg(sock)
        for fd in fds:
            os.close(fd)
        if msg is None:
            return
        if msg.get("family") == "packet":  # the bench's socket, made in its own namespace
            send_msg(sock, {"ok": True}, [packet.fileno()])
            continue
        try:
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)  # the application's, in the DUT's namespace
        except OSError as e:
            send_msg(sock, {"ok": False, "error": str(e)})
            continue
        try:
            send_msg(sock, {"ok": True}, [s.fileno()])
        finally:
            s.close()


if __name__ == "__main__":
    main()
