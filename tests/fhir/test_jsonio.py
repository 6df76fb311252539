"""Request JSON: decimals kept exactly, duplicate keys and deep nesting refused, fast and slow paths agree."""
from __future__ import annotations

import pytest

from ipt_fhir.fhir.jsonio import dump_json, parse_json
from ipt_fhir.fhir.outcome import FHIRError


@pytest.mark.parametrize("body", [
    b'{"a":1,"a":2}',
    b'{"a" : 1, "a"  :2}',
    b'{"x":{"a\\\\":1,"a\\\\":2}}',
    b'{"v":1.5,"v":2.5}',
    b'{"n":[{"k":"\\":","k":1}]}',
])
def test_duplicate_keys_are_refused_whatever_the_spacing_or_escapes(body):
    with pytest.raises(FHIRError) as caught:
        parse_json(body)
    assert caught.value.status == 400 and "Duplicate" in caught.value.issues[0].diagnostics


def test_escaped_quotes_and_colons_inside_strings_are_not_keys():
    assert parse_json(b'{"a\\"":1,"b":"x:\\"y\\":","c":["d",{"e":true}]}') == {
        'a"': 1, "b": 'x:"y":', "c": ["d", {"e": True}]}


@pytest.mark.parametrize("text", ["1.50", "0.0", "1e3", "-2.500E-3", "100"])
def test_numbers_are_written_back_as_they_were_sent(text):
    assert dump_json(parse_json(f'{{"v":{text}}}'.encode())) == f'{{"v":{text}}}'.encode()


def test_nesting_deeper_than_the_limit_is_refused():
    with pytest.raises(FHIRError):
        parse_json(b"[" * 70 + b"]" * 70)
    assert parse_json(b"[" * 20 + b"]" * 20)


@pytest.mark.parametrize("body", [b"{", b"NaN", b'{"a":Infinity}', b"\xff", b"[1,]"])
def test_malformed_json_is_a_400(body):
    with pytest.raises(FHIRError) as caught:
        parse_json(body)
    assert caught.value.status == 400

