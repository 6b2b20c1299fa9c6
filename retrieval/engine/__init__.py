"""fetchweb's protocol engine: POP3, IMAP, ETRN, ODMR retrieval and SMTP/LMTP/MDA delivery.

Pure Python. Nothing here imports Django, Celery, the rcfile package or the command
line; ``tests/engine/test_layers.py`` checks that and the direction of imports:
``run`` (and the other top-level composers) -> ``fetch/`` and ``deliver/`` (never each
other) -> ``wire/``, with ``spec``, ``ports``, ``errors``, ``report`` and ``redact``
importable by all.
"""
