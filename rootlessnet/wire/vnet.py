"""Wire layer, Linux virtio_net_hdr (include/uapi/linux/virtio_net.h): 10 bytes, little-endian.

Contract: every read from and write to a tap opened with IFF_VNET_HDR
carries this header in front of the Ethernet frame (10 bytes unless
TUNSETVNETHDRSZ changed it).  ``VnetHeader.parse`` raises only WireError.
``gso_type`` is kept as a plain int (unknown types such as UDP_L4 = 5 are
kept); use the ``gso`` and ``ecn`` properties to split off the ECN bit.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from rootlessnet.wire import WireError

__all__ = [
    "VNET_HDR", "VNET_HDR_LEN", "NO_OFFLOAD_HDR",
    "VIRTIO_NET_HDR_F_NEEDS_CSUM", "VIRTIO_NET_HDR_F_DATA_VALID",
    "GSO_NONE", "GSO_TCPV4", "GSO_UDP", "GSO_TCPV6", "GSO_UDP_L4", "GSO_ECN",
    "VnetHeader",
]

#: flags gso_type hdr_len gso_size csum_start csum_offset
VNET_HDR = struct.Struct("<BBHHHH")
VNET_HDR_LEN = VNET_HDR.size  # 10
NO_OFFLOAD_HDR = bytes(VNET_HDR_LEN)

VIRTIO_NET_HDR_F_NEEDS_CSUM = 1  # checksum from csum_start, stored at csum_start + csum_offset
VIRTIO_NET_HDR_F_DATA_VALID = 2  # checksum already verified
GSO_NONE = 0
GSO_TCPV4 = 1
GSO_UDP = 3  # UFO (deprecated in Linux)
GSO_TCPV6 = 4
GSO_UDP_L4 = 5  # USO, Linux 6.2+
GSO_ECN = 0x80  # the TCP segments carry CWR/ECE


@dataclass(frozen=True, slots=True)
class VnetHeader:
    flags: int = 0
    gso_type: int = GSO_NONE
    hdr_len: int = 0  # length of the headers (Ethernet + IP + TCP) of each segment
    gso_size: int = 0  # payload bytes per segment (the MSS)
    csum_start: int = 0
    csum_offset: int = 0

    header_len = VNET_HDR_LEN
    buffer_len = VNET_HDR_LEN

    def __post_init__(self) -> None:
        if not (0 <= self.flags <= 0xFF and 0 <= self.gso_type <= 0xFF):
            raise ValueError("flags and gso_type are single octets")
        for v in (self.hdr_len, self.gso_size, self.csum_start, self.csum_offset):
            if not 0 <= v <= 0xFFFF:
                raise ValueError("virtio_net_hdr lengths are 16 bits")

    @classmethod
    def parse(cls, buf) -> "VnetHeader":
        if len(buf) < VNET_HDR_LEN:
            raise WireError(f"vnet: {len(buf)} bytes is shorter than the 10-byte virtio_net_hdr")
        return cls(*VNET_HDR.unpack_from(buf))

    @property
    def needs_csum(self) -> bool:
        return bool(self.flags & VIRTIO_NET_HDR_F_NEEDS_CSUM)

    @property
    def data_valid(self) -> bool:
        return bool(self.flags & VIRTIO_NET_HDR_F_DATA_VALID)

    @property
    def gso(self) -> int:
        """The GSO type without the ECN bit."""
        return self.gso_type & ~GSO_ECN

    @property
    def ecn(self) -> bool:
        return bool(self.gso_type & GSO_ECN)

    def emit(self) -> bytes:
        return VNET_HDR.pack(self.flags, self.gso_type, self.hdr_len, self.gso_size,
                             self.csum_start, self.csum_offset)
