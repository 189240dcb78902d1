"""`python -m clay_core` is the `clay` command (the QGIS worker runs it this way)."""

import sys

from clay_core.cli import main

if __name__ == "__main__":
    sys.exit(main())
