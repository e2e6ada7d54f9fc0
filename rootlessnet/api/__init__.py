"""rootlessnet.api."""
