"""`python -m cluster`: the local-cluster CLI (up, down, status, faults); see cluster/README.md."""

import sys

from cluster.cli import main

sys.exit(main())
