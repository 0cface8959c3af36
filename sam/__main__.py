"""``python -m sam <command>``: see :mod:`sam.cli`."""

import sys

from sam.cli import main

if __name__ == "__main__":
    sys.exit(main())
