"""The mailbox pages, under /mailboxes/ (see fetchweb/urls.py)."""

from __future__ import annotations

from django.urls import path

from retrieval import console_views, oauth_views, rcfile_views, views
from retrieval.models import OAuthGrant

app_name = "retrieval"

urlpatterns = [
    path("", console_views.mailbox_list, name="mailbox-list"),
    path("bulk/", console_views.mailbox_bulk, name="mailbox-bulk"),
    path("new/", views.mailbox_add, name="mailbox-add"),
    path("import/", rcfile_views.rcfile_import, name="rcfile-import"),
    path(
        "import/confirm/",
        rcfile_views.rcfile_import_confirm,
        name="rcfile-import-confirm",
    ),
    path("export/", rcfile_views.rcfile_export, name="rcfile-export"),
    path("<int:pk>/export/", rcfile_views.mailbox_export, name="mailbox-export"),
    path("<int:pk>/", views.mailbox_detail, name="mailbox-detail"),
    path("<int:pk>/edit/", views.mailbox_edit, name="mailbox-edit"),
    path("<int:pk>/rules/", views.mailbox_rules, name="mailbox-rules"),
    path("<int:pk>/poll/", views.mailbox_poll, name="mailbox-poll"),
    path("<int:pk>/test/", views.mailbox_test, name="mailbox-test"),
    path("<int:pk>/resume/", views.mailbox_resume, name="mailbox-resume"),
    path("<int:pk>/pause/", views.mailbox_pause, name="mailbox-pause"),
    path(
        "<int:pk>/poll/status/", views.mailbox_poll_status, name="mailbox-poll-status"
    ),
    path(
        "<int:pk>/tests/<int:test_pk>/", views.connection_test, name="connection-test"
    ),
    path(
        "<int:pk>/tests/<int:test_pk>/status/",
        views.connection_test_status,
        name="connection-test-status",
    ),
    path("<int:pk>/delete/", views.mailbox_delete, name="mailbox-delete"),
    path("<int:pk>/oauth/connect/", oauth_views.oauth_connect, name="oauth-connect"),
    path(
        "<int:pk>/oauth/disconnect/",
        oauth_views.oauth_disconnect,
        name="oauth-disconnect",
    ),
    # The same buttons for the IMAP mailbox delivered into (its own grant).
    path(
        "<int:pk>/oauth/destination/connect/",
        oauth_views.oauth_connect,
        {"purpose": OAuthGrant.Purpose.DESTINATION},
        name="oauth-destination-connect",
    ),
    path(
        "<int:pk>/oauth/destination/disconnect/",
        oauth_views.oauth_disconnect,
        {"purpose": OAuthGrant.Purpose.DESTINATION},
        name="oauth-destination-disconnect",
    ),
    path("oauth/callback/", oauth_views.oauth_callback, name="oauth-callback"),
    path("<int:pk>/runs/<int:run_pk>/", views.run_detail, name="run-detail"),
    path(
        "<int:pk>/runs/<int:run_pk>/transcript.txt",
        views.run_transcript,
        name="run-transcript",
    ),
]
