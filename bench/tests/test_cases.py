import pytest

from bench.cases import (
    DEFAULT_CASES,
    FULL_MESSAGES,
    LATENCY_MESSAGES,
    CaseError,
    messages_for,
    parse_case,
    parse_cases,
)


def test_names_parse_into_protocol_and_modifiers():
    c = parse_case("imaps-delayed-keep")
    assert (c.protocol, c.tls, c.keep, c.delayed) == ("imap", True, True, True)
    assert c.name == "imaps-keep-delayed"  # canonical modifier order
    assert parse_case("pop3").tls is False


@pytest.mark.parametrize(
    "bad", ["smtp", "pop3-fast", "pop3-lmtp-delayed", "imap-big-many"]
)
def test_bad_names_are_refused(bad):
    with pytest.raises(CaseError):
        parse_case(bad)


def test_all_means_the_default_list_and_duplicates_collapse():
    assert [c.name for c in parse_cases("all")] == list(DEFAULT_CASES)
    assert [c.name for c in parse_cases("pop3,imap,pop3")] == ["pop3", "imap"]


def test_latency_bound_cases_default_to_fewer_messages():
    assert messages_for(parse_case("pop3"), None) == FULL_MESSAGES
    assert messages_for(parse_case("pop3-slow"), None) == LATENCY_MESSAGES
    assert messages_for(parse_case("pop3-slow"), 50) == 50
