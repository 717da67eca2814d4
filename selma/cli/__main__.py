"""``python -m selma.cli``: the same as the ``selma-bench`` command."""

import sys

from selma.cli import main

sys.exit(main())
