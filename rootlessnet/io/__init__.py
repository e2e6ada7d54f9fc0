"""rootlessnet.io."""
