from bench.verify import Expected, Manifest, check, is_trace_prefix, message_id

SOURCE = (
    b"Return-Path: <a@example.net>\r\n"
    b"Received: from x by y; Fri, 01 Mar 2024 08:00:00 +0000\r\n"
    b"Message-ID: <1@example.net>\r\n"
    b"Subject: hi\r\n\r\n"
    b".leading dot\r\nbody\r\n"
)
TRACE = b"Received: from localhost\r\n\tby vm with POP3; Fri, 01 Mar 2024\r\n"


def manifest() -> Manifest:
    return Manifest({"<1@example.net>": Expected.of(SOURCE)})


def test_the_source_with_a_trace_header_in_front_passes():
    assert check(TRACE + SOURCE, manifest()).ok
    assert check(SOURCE, manifest()).ok


def test_dropping_the_leading_return_path_passes_with_a_note():
    bare = SOURCE.split(b"\r\n", 1)[1]
    verdict = check(TRACE + bare, manifest())
    assert verdict.ok
    assert verdict.why == "Return-Path dropped"


def test_a_changed_body_fails():
    verdict = check(TRACE + SOURCE.replace(b"body", b"bodY"), manifest())
    assert not verdict.ok
    assert "differs" in verdict.why


def test_a_non_trace_header_in_front_fails():
    verdict = check(b"X-Spam: yes\r\n" + SOURCE, manifest())
    assert not verdict.ok
    assert "non-trace" in verdict.why


def test_unknown_and_missing_message_ids_fail():
    other = SOURCE.replace(b"<1@", b"<2@")
    assert check(other, manifest()).why == "Message-ID not in the source mailbox"
    assert check(b"Subject: x\r\n\r\nbody\r\n", manifest()).why == "no Message-ID"


def test_truncated_message_fails():
    assert "short" in check(SOURCE[:-10], manifest()).why


def test_message_id_is_read_from_the_header_only():
    raw = b"Subject: x\r\n\r\nMessage-ID: <body@example.net>\r\n"
    assert message_id(raw) is None


def test_trace_prefix_rules():
    assert is_trace_prefix(b"")
    assert is_trace_prefix(TRACE)
    assert is_trace_prefix(b"Delivered-To: a\r\nReturn-Path: <b>\r\n" + TRACE)
    assert not is_trace_prefix(b"\tcontinuation first\r\n")
    assert not is_trace_prefix(b"Received: no line end")


def test_manifest_round_trips(tmp_path):
    m = manifest()
    m.dump(tmp_path / "m.json")
    assert Manifest.load(tmp_path / "m.json") == m
