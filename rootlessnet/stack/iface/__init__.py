"""stack.iface: the interface, split by layer as smoltcp's iface/ is.

One ``Core`` object (stack.core) is built from a single line of classes,
each adding one layer and living in its own file; a lower layer hands a
packet up by calling the method the next one defines:

* ``link.Link``   Ethernet dispatch, ARP, the guest's MAC, the output queue,
                  internal errors;
* ``ip.Ip``       IPv4 and IPv6 checks and demultiplexing, checksums;
* ``icmp.Icmp``   ICMP and ICMPv6: echo, unreachable, NDP;
* ``udp.Udp``     UDP: DHCP, the static resolver, datagrams for the shell;
* ``tcp.Tcp``     TCP: the flow table, TIME-WAIT, timers, segments out.

``events`` holds the typed events the core hands the shell. Headers are
parsed and built only with ``rootlessnet.wire``. Pure: no trio, socket, os
or time; a single line of inheritance so the package compiles as native
classes (mypyc) as well as it runs interpreted.
"""
