"""``python -m recengine`` runs the command line."""

import sys

from recengine.cli import main

sys.exit(main())
