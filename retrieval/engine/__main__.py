"""``python -m retrieval.engine -f RCFILE [options] [server ...]``."""

import sys

from .cli import main

sys.exit(main())
