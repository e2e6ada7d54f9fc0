"""The Linux DUT's namespace: run inside ``unshare -Urn`` by ``dut.LinuxDut``.

Builds ``veth0`` (the bench's side: no address, so this kernel never answers
on it) and ``veth1`` (the DUT: 10.0.2.2/24 with the engine's gateway MAC, MTU
65520 like the engine's tap0, a permanent neighbour entry for the bench's
address so it never ARPs), reports ``ready``, then makes sockets in this
namespace on request and passes them back (SCM_RIGHTS) until the channel
closes. TCP sysctls stay at the kernel's defaults for a new namespace, but for
tcp_no_metrics_save=1 (see below).
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys

MAX_LIFETIME = 1800  # seconds: the helper never outlives a forgotten bench

SETUP = [
    "ip link set lo up",
    "ip link add veth0 mtu 65520 type veth peer name veth1 mtu 65520",
    "ip link set veth1 address 52:55:00:00:00:02",
    "ip addr add 10.0.2.2/24 dev veth1",
    "ip link set veth0 up",
    "ip link set veth1 up",
    "ip neigh replace 10.0.2.50 lladdr 02:00:00:00:00:50 dev veth1 nud permanent",
]


def _sysctl(path: str, value: str) -> None:
    with open(path, "w") as f:
        f.write(value)


def main() -> None:
    from rootlessnet.ns.control import recv_msg, send_msg

    sock = socket.socket(fileno=int(sys.argv[1]))
    signal.alarm(MAX_LIFETIME)
    try:
        # no IPv6 on the veths: no router solicitations, DAD or MLD frames for the bench to see
        for conf in ("all", "default"):
            _sysctl(f"/proc/sys/net/ipv6/conf/{conf}/disable_ipv6", "1")
        # Each connection starts afresh, as the engine's do: no RTT/ssthresh cached per destination
        # from earlier scenarios (tcp_init_metrics would otherwise skip RFC 6298's 3 s fallback).
        _sysctl("/proc/sys/net/ipv4/tcp_no_metrics_save", "1")
        for cmd in SETUP:
            subprocess.run(cmd.split(), check=True, capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.SubprocessError) as e:
        err = getattr(e, "stderr", "") or str(e)
        send_msg(sock, {"type": "error", "message": f"Linux DUT set-up failed: {err.strip()}"})
        return
    send_msg(sock, {"type": "ready"})
    families = {"inet": socket.AF_INET, "packet": socket.AF_PACKET}
    kinds = {"stream": socket.SOCK_STREAM, "raw": socket.SOCK_RAW}
    while True:
        msg, fds = recv_msg(sock)
        for fd in fds:
            os.close(fd)
        if msg is None:
            return
        try:
            s = socket.socket(families[msg["family"]], kinds[msg["type"]], int(msg.get("proto", 0)))
        except (KeyError, OSError) as e:
            send_msg(sock, {"ok": False, "error": str(e)})
            continue
        try:
            send_msg(sock, {"ok": True}, [s.fileno()])
        finally:
            s.close()


if __name__ == "__main__":
    main()
