"""``python -m nasp`` is the ``nasp`` command."""

import sys

from nasp.cli import main

sys.exit(main())
