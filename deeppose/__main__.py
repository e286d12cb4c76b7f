"""``python -m deeppose ...``: the ``deeppose`` command."""
import sys

from deeppose.cli import main

sys.exit(main())
