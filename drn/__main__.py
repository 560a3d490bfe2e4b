"""``python -m drn``: the same as the ``drn`` command."""

import sys

from drn.cli import main

sys.exit(main())
