"""``python -m devcloud …``: the same as ``syncd devcloud …``."""

import sys

from devcloud.cli import main

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
