"""``python -m raftkv``: start a member (same as the ``raftkv`` console script)."""

import sys

from raftkv.cli.server import main

sys.exit(main())
