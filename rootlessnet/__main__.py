"""`python -m rootlessnet`: same as the `rootlessnet` console script."""

import sys

from rootlessnet.cli import main

sys.exit(main())
