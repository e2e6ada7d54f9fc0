"""rootlessnet.ns."""
