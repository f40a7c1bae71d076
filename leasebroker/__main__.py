"""``python -m leasebroker``: the same command as the ``leasebroker`` console script."""

import sys

from leasebroker.cli import main

sys.exit(main())
