"""rootlessnet.harness."""
