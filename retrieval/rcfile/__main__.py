"""``python -m retrieval.rcfile FILE``."""

import sys

from .cli import main

sys.exit(main())
