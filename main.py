"""deeppose command line in a checkout: `python main.py [COMMAND] ...` (the desktop app when no
command is given). The installed package has the same commands as `deeppose` (deeppose/cli.py)."""
from __future__ import annotations

import sys

from deeppose.cli import COMMANDS, build_parser, main  # noqa: F401 (tests and scripts call main.main)

if __name__ == "__main__":
    sys.exit(main(prog="main.py"))
