"""Differential TCP conformance: the engine against the Linux kernel, on the same frames.

See docs/conformance.md. ``python -m tests.conformance`` (``hack/conformance``)
prints the table; ``tests/conformance/test_conformance.py`` runs it under pytest.
"""
