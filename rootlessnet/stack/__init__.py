"""rootlessnet.stack."""
