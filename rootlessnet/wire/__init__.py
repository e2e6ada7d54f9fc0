"""Wire layer: pure packet codecs, bytes <-> small frozen structs; no state, no I/O.

Every ``parse`` in this package raises :class:`WireError` (and nothing else)
when the peer sent garbage: truncated buffers, bad lengths, bad checksums,
malformed options.  Misuse of the API (building a struct with a 5-byte MAC,
a port above 65535 ...) raises a plain :class:`ValueError` from the
constructor, so the two kinds of error stay apart (see docs/style.md).

Import the codec modules directly (``from rootlessnet.wire import tcp``);
this package module stays cheap to import.  Modules: checksum, ip (protocol
numbers, address text), ethernet, arp, ipv4, ipv6, icmpv4, icmpv6 (+ NDP),
udp, tcp, dhcp, dns, vnet (virtio_net_hdr).
"""

from __future__ import annotations

__all__ = ["WireError"]


class WireError(ValueError):
    """The bytes on the wire are not a valid packet of the expected kind."""
