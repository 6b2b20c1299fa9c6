"""fetchweb's benchmark against fetchmail: ``python -m bench`` (see README.md).

Not part of the installed package; dev dependencies (trustme, matplotlib) only.
"""
