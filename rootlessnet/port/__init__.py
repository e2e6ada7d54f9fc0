"""rootlessnet.port."""
