import hashlib

from bench.corpus import ATTACH_MAX, TEXT_MIN, Corpus, write_big


def test_the_mix_is_deterministic_and_prefix_stable():
    a = [m.raw for m in Corpus("seed", "bench0000").messages(30)]
    b = [m.raw for m in Corpus("seed", "bench0000").messages(40)]
    assert a == b[:30]
    c = [m.raw for m in Corpus("other", "bench0000").messages(30)]
    assert a != c


def test_messages_are_clean_crlf_with_unique_ids_and_realistic_sizes():
    messages = list(Corpus("seed", "bench0001").messages(300))
    assert len({m.mid for m in messages}) == 300
    for m in messages:
        stripped = m.raw.replace(b"\r\n", b"")
        assert b"\r" not in stripped and b"\n" not in stripped
        assert m.raw.endswith(b"\r\n")
        assert TEXT_MIN * 0.9 <= m.size <= ATTACH_MAX * 1.1
        assert m.raw.count(b"Message-ID: " + m.mid.encode()) == 1
    assert any(m.size > 100_000 for m in messages)  # some attachments
    assert sum(m.size < 20_500 for m in messages) > 250  # mostly small text
    assert any(b"\r\n." in m.raw for m in messages)  # dot-stuffing is exercised


def test_mailboxes_have_distinct_message_ids():
    a = {m.mid for m in Corpus("seed", "bench0000").messages(50)}
    b = {m.mid for m in Corpus("seed", "bench0001").messages(50)}
    assert not a & b


def test_the_big_message_is_written_in_lf_form_and_hashed_in_crlf_form(tmp_path):
    path = tmp_path / "big"
    mid, expected = write_big(path, 300_000, "seed", "big0000")
    crlf = path.read_bytes().replace(b"\n", b"\r\n")
    assert len(crlf) == expected.size
    assert abs(expected.size - 300_000) < 200
    assert hashlib.sha256(crlf).hexdigest() == expected.sha256
    assert mid.encode() in crlf
