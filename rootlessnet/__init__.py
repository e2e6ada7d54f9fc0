"""rootlessnet: rootless networking for Linux (namespaces + a userspace TCP/IP engine)."""

__version__ = "0.1.0"
