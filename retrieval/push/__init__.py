"""The IDLE push process (``python manage.py idle``): IMAP IDLE for idle-enabled
mailboxes, a push poll queued on new mail. See :mod:`retrieval.push.supervisor`."""
