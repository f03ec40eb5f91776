"""``python -m nas_core``: the ``nas`` command line."""

import sys

from nas_core.cli import main

sys.exit(main())
