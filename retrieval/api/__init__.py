"""The REST API under /api/v1/ (Django REST framework, schema by drf-spectacular).

The same rules as the pages: objects are found through retrieval.selectors and
retrieval.permissions (404 for what the caller cannot see, 403 for what they may
only look at), values are checked by the pages' forms (retrieval.forms), and
every change goes through retrieval.services.
"""
