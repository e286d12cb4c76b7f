"""``python -m deeppose ...``: the ``deeppose`` command."""
import sys

try:
    from deeppose.cli import main
except KeyboardInterrupt:   # Ctrl-C before the command line is loaded: the same line and exit as later
    import signal
    signal.signal(signal.SIGINT, signal.SIG_IGN)   # exiting now (see deeppose.cli.main)
    print("\ninterrupted: deeppose stopped (Ctrl-C)", file=sys.stderr)
    sys.exit(130)

sys.exit(main())
