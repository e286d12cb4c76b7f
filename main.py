"""deeppose command line in a checkout: `python main.py [COMMAND] ...` (the desktop app when no
command is given). The installed package has the same commands as `deeppose` (deeppose/cli.py)."""
from __future__ import annotations

import sys

try:
    from deeppose.cli import COMMANDS, build_parser, main  # noqa: F401 (tests and scripts call main.main)
except KeyboardInterrupt:   # Ctrl-C before the command line is loaded: the same line and exit as later
    if __name__ != "__main__":
        raise
    import signal
    signal.signal(signal.SIGINT, signal.SIG_IGN)   # exiting now (see deeppose.cli.main)
    print("\ninterrupted: main.py stopped (Ctrl-C)", file=sys.stderr)
    sys.exit(130)

if __name__ == "__main__":
    sys.exit(main(prog="main.py"))
