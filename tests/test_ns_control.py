"""ns.control: a descriptor the kernel had to drop on the way in is reported as out of fds."""

from __future__ import annotations

import subprocess
import sys

CODE = r"""
import errno, os, resource, socket
from rootlessnet.ns.control import recv_msg, send_msg
a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
r, w = os.pipe()
send_msg(a, {"type": "tap"}, [r])
lowest_free = os.dup(0)
os.close(lowest_free)
resource.setrlimit(resource.RLIMIT_NOFILE, (lowest_free, resource.getrlimit(resource.RLIMIT_NOFILE)[1]))
try:
    recv_msg(b)
except OSError as e:
    print(errno.errorcode[e.errno])
else:
    print("received")
"""


def test_a_dropped_descriptor_is_out_of_fds():
    r = subprocess.run([sys.executable, "-c", CODE], capture_output=True, text=True, timeout=60)
    assert r.stdout.strip() == "EMFILE", r.stderr
