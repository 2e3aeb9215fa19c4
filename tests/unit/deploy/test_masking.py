"""The secret masker (core/deploy/masking.py): whole text and streams, every shape of issue 12
(a secret split across chunks, a multi-line PEM key, a backslash, a line cut at 64 KiB), and
Hypothesis over any secrets, text and cuts."""

from __future__ import annotations

import shlex

import hypothesis.strategies as st
from hypothesis import given, settings

from core.deploy.masking import MASK, Masker, secret_forms
from core.resources.variables import Values

PEM = (
    "-----BEGIN OPENSSH PRIVATE KEY-----\n"
    "b3BlbnNzaC1rZXktdjEAAAAABG5vbmUAAAAEbm9uZQAAAAAAAAABAAAAMwAAAAtzc2gtZW\n"
    "QyNTUxOQAAACDa0nl3Yk6O1pGyV4Jk8bgTuI7sm3kkP1AeTh0m1pLBXQAAAJg0Rdz8NEXc\n"
    "-----END OPENSSH PRIVATE KEY-----\n"
)
PEM_LINES = [line for line in PEM.splitlines() if len(line) > 40]


def streamed(masker: Masker, pieces: list[str]) -> str:
    stream = masker.stream()
    return "".join(stream.feed(p) for p in pieces) + stream.end()


def test_a_value_anywhere_in_the_text() -> None:
    masker = Masker(["hunter2-secret"])
    assert masker.mask("pw=hunter2-secret; again hunter2-secret.") == "pw=***; again ***."
    assert Masker([]).mask("nothing hunter2") == "nothing hunter2"
    assert not Masker(["", ""])


def test_the_longest_form_wins() -> None:
    masker = Masker(["abc123", "abc123456"])
    assert masker.mask("x abc123456 y abc123 z") == "x *** y *** z"


def test_a_secret_split_across_chunks_is_masked_whole() -> None:
    masker = Masker(["s3cr3t-value"])
    assert (
        streamed(masker, ["token is s3c", "r3t-val", "ue and more\n"]) == "token is *** and more\n"
    )
    stream = masker.stream()
    assert stream.feed("token is s3c") == "token is "  # the start of the secret is held back
    assert stream.held == 3
    assert stream.feed("ret?\n") == "s3cret?\n"  # not the secret after all: released as it is


def test_each_byte_a_chunk() -> None:
    masker = Masker(["pässwörd-ü"])
    data = "say pässwörd-ü twice: pässwörd-ü\n".encode()
    output = masker.output()
    text = "".join(output.feed(data[i : i + 1]) for i in range(len(data))) + output.end()
    assert text == "say *** twice: ***\n"


def test_output_is_released_in_whole_lines() -> None:
    masker = Masker(["s3cr3t-value"])
    output = masker.output()
    assert output.feed(b"one\ntwo s3cr3t") == "one\n"
    assert output.feed(b"-value three\nfour") == "two *** three\n"
    assert output.end() == "four"
    long = masker.output()
    long.line_limit = 10
    assert long.feed(b"0123456789") == ""
    assert long.feed(b"ab") == "0123456789ab"  # a partial line over the limit goes out


def test_a_stream_that_stops_inside_a_secret_masks_its_start() -> None:
    masker = Masker(["s3cr3t-value"])
    assert streamed(masker, ["killed while printing s3cr3t-"]) == "killed while printing ***"
    assert streamed(masker, ["ends in s3"]) == "ends in s3"  # two characters tell nothing


def test_a_multi_line_pem_whole_and_line_by_line() -> None:
    masker = Masker([PEM])
    assert masker.mask(f"key:\n{PEM}done") == "key:\n***done"
    indented = "".join(f"  | {line}\n" for line in PEM.splitlines())
    masked = masker.mask(indented)
    assert not any(line in masked for line in PEM_LINES)
    assert masked.count(MASK) == 4
    # one line of the key at a time, as the periphery sends output (a chunk per line)
    lines = [line + "\n" for line in PEM.splitlines()]
    assert streamed(masker, ["key:\n", *lines, "done\n"]) == "key:\n***done\n"
    # only the first two lines, then the stream ends: each line masked on its own
    assert streamed(masker, lines[:2]) == "***\n***\n"
    assert not any(p in streamed(masker, ["head: ", lines[1], "\n"]) for p in PEM_LINES)


def test_a_backslash_as_written_and_as_escaped() -> None:
    value = "bs\\S3CRET-tail"
    masker = Masker([value])
    assert masker.mask("$ echo bs\\S3CRET-tail  (in /srv)") == "$ echo ***  (in /srv)"
    assert masker.mask(repr(value)) == "'***'"
    assert masker.mask('{"TOKEN": "bs\\\\S3CRET-tail"}') == '{"TOKEN": "***"}'
    assert "bs\\\\S3CRET-tail" in secret_forms([value])


def test_a_quote_as_a_shell_quotes_it() -> None:
    value = "it's-a-s3cret"
    masker = Masker([value])
    assert masker.mask(shlex.join(["echo", value])) == "echo '***'"


def test_a_line_longer_than_64kib_cut_through_the_secret() -> None:
    secret = "long-line-secret-0123456789"
    line = "x" * (64 * 1024 - 10) + secret + "y" * 100 + "\n"
    cut = 64 * 1024
    masker = Masker([secret])
    assert (
        streamed(masker, [line[:cut], line[cut:]])
        == "x" * (64 * 1024 - 10) + MASK + "y" * 100 + "\n"
    )


def test_values_mask_uses_the_same_forms() -> None:
    token = "bs\\S3CRET-tail"
    values = Values({"PUBLIC": "plain"}, {"KEY": PEM, "TOKEN": token})
    text = f"plain {PEM_LINES[0]} {token!r}"
    assert values.mask(text) == "plain *** '***'"


# ------------------------------------------------------------------------------ Hypothesis

ALPHABET = "ab\\\n'-é"  # small, so secrets overlap and recur; no '*' (the mask itself)
secrets_ = st.lists(st.text(ALPHABET, min_size=1, max_size=12), min_size=1, max_size=4)
texts = st.text(ALPHABET + "xyz", max_size=80)


def _pieces(text: str, cuts: list[int]) -> list[str]:
    points = sorted({c % (len(text) + 1) for c in cuts})
    return [text[a:b] for a, b in zip([0, *points], [*points, len(text)], strict=True)]


@settings(max_examples=400, deadline=None)
@given(secrets_, texts, st.lists(st.integers(0, 200), max_size=8))
def test_streaming_equals_masking_the_whole(secrets: list[str], text: str, cuts: list[int]) -> None:
    masker = Masker(secrets)
    out = streamed(masker, _pieces(text, cuts))
    assert out == masker._mask_end(text)
    for form in masker.forms:
        assert form not in out


@settings(max_examples=200, deadline=None)
@given(secrets_, texts, st.lists(st.integers(0, 400), max_size=8))
def test_bytes_cut_anywhere(secrets: list[str], text: str, cuts: list[int]) -> None:
    masker = Masker(secrets)
    data = text.encode()
    points = sorted({c % (len(data) + 1) for c in cuts})
    output = masker.output()
    pieces = [data[a:b] for a, b in zip([0, *points], [*points, len(data)], strict=True)]
    out = "".join(output.feed(p) for p in pieces) + output.end()
    assert out == masker._mask_end(text)
