"""Build hook for the optional compiled datapath (everything else is in pyproject.toml).

With ROOTLESSNET_COMPILE=1, the modules rootlessnet/compiled.py lists are
compiled with mypyc (needs mypy, gcc and the Python headers):

    ROOTLESSNET_COMPILE=1 pip install --no-build-isolation .   # with mypy installed
    hack/compile                                               # in place, for a source tree

Without it, nothing is compiled: the package is pure Python.
"""

import os
import sys

from setuptools import setup

ext_modules = []
if os.environ.get("ROOTLESSNET_COMPILE") == "1":
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from mypyc.build import mypycify

    from rootlessnet.compiled import MODULES

    ext_modules = mypycify(["--ignore-missing-imports", *MODULES], opt_level="3",
                           group_name="rootlessnet.native")

setup(ext_modules=ext_modules)
