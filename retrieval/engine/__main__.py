"""``python -m retrieval.engine -f RCFILE [options] [server ...]``: see :mod:`retrieval.cli`."""

from retrieval.cli.main import main

raise SystemExit(main())
