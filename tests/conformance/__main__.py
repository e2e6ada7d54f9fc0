"""``python -m tests.conformance``: what hack/conformance runs."""

import sys

from tests.conformance.runner import main

sys.exit(main())
