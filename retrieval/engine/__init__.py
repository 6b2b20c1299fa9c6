"""fetchweb's protocol engine: POP3, IMAP, ETRN, ODMR retrieval and SMTP/LMTP/MDA delivery.

Pure Python. Nothing here imports Django or Celery; a test checks it.
"""
