"""``python -m nasp`` is the ``nasp`` command."""

import sys

from nasp.apps.cli import main

sys.exit(main())
