"""The line ``bin/run`` prints when it starts fetchweb in development mode.

``make run`` works with no configuration at all, and then DEBUG is on (see
fetchweb/settings.py): Django's debug pages, which show code and settings, would
reach whoever sees an error. Saying so at each start is the contract; production
sets DEBUG=false and gets templates/403.html, 404.html and 500.html.
"""

from __future__ import annotations

import os
import sys

WARNING = (
    "fetchweb: DEVELOPMENT MODE (DEBUG is on): error pages show code and settings "
    "to whoever hits an error; set DEBUG=false in .env before anyone else uses it."
)


def warning() -> str:
    """The warning when DEBUG is on, else ""."""
    from django.conf import settings

    return WARNING if settings.DEBUG else ""


def main() -> int:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "fetchweb.settings")
    import django

    django.setup()
    text = warning()
    if text:
        sys.stderr.write(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
