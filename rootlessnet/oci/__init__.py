"""rootlessnet.oci."""
