"""``python -m prior_rl ...`` runs the ``prior-rl`` command line (:mod:`prior_rl.cli`)."""

import sys

from prior_rl.cli import main

if __name__ == "__main__":
    sys.exit(main())
