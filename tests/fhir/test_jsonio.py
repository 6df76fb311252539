"""Request JSON: decimals kept exactly, duplicate keys and deep nesting refused, fast and slow paths agree."""
from __future__ import annotations

import pytest

from ipt_fhir.fhir.jsonio import dump_json, load_stored, parse_json
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


@pytest.mark.parametrize("body, expected_text", [
    (b'{"v":-0}', '{"v":-0}'),
    (b'{"v": [1, -0 ,-0.0], "d": "2020-01-02", "w": -0e0}', '{"v":[1,-0,-0.0],"d":"2020-01-02","w":-0e0}'),
    (b'{"s":"a:-0","v":-0,"x":2.50}', '{"s":"a:-0","v":-0,"x":2.50}'),
])
def test_negative_zero_keeps_its_sign_through_parsing_storing_and_loading(body, expected_text):
    """json.html: a number is kept as written; the integer -0 is the one Python has no sign for."""
    parsed = parse_json(body)
    assert dump_json(parsed) == expected_text.encode()
    assert dump_json(load_stored(dump_json(parsed))) == expected_text.encode()


def test_a_duplicate_key_beside_a_negative_zero_is_still_refused():
    with pytest.raises(FHIRError) as caught:
        parse_json(b'{"v":-0,"v":-0}')
    assert caught.value.status == 400


def test_nesting_deeper_than_the_limit_is_refused():
    with pytest.raises(FHIRError):
        parse_json(b"[" * 70 + b"]" * 70)
    assert parse_json(b"[" * 20 + b"]" * 20)


def _nested_patient(levels: int) -> dict:
    """A Patient whose extensions nest `levels` deep: each level adds two (the array and its object)."""
    ext: dict = {"url": "http://example.org/leaf", "valueString": "x"}
    for _ in range(levels - 1):
        ext = {"url": "http://example.org/n", "extension": [ext]}
    return {"resourceType": "Patient", "extension": [ext]}


@pytest.mark.parametrize("decimal", [False, True])  # the fast path, and the exact parser's
def test_a_resource_accepted_alone_is_accepted_inside_a_bundle_or_parameters(decimal):
    """The limit bounds a resource's own nesting: the three levels a Bundle or Parameters adds above it
    (entry, its item, resource) do not count against it; one more level does."""
    import json

    from ipt_fhir.fhir import jsonio

    patient = _nested_patient((jsonio.MAX_DEPTH - 1) // 2)
    if decimal:
        patient["extension"][0]["valueDecimal"] = 1.50
    alone = json.dumps(patient)
    assert parse_json(alone)
    with pytest.raises(FHIRError):
        parse_json(json.dumps({"resourceType": "Patient", "contained": [patient]}).replace('"Patient"', '"Basic"', 1))
    bundle = {"resourceType": "Bundle", "type": "batch", "entry": [{"resource": patient}]}
    parameters = {"resourceType": "Parameters", "parameter": [{"name": "resource", "resource": patient}]}
    for wrapper in (bundle, parameters):
        assert parse_json(json.dumps(wrapper))
        deeper = {**wrapper, "meta": {"tag": [{"extension": [{"url": "u", "extension": [{"url": "v", "extension": [wrapper]}]}]}]}}
        with pytest.raises(FHIRError):
            parse_json(json.dumps(deeper))


@pytest.mark.parametrize("body", [b"{", b"NaN", b'{"a":Infinity}', b"\xff", b"[1,]"])
def test_malformed_json_is_a_400(body):
    with pytest.raises(FHIRError) as caught:
        parse_json(body)
    assert caught.value.status == 400



# The fast path (orjson plus checks on its re-serialisation) must hand over to the exact parser whenever
# a decimal, a duplicate key or too deep a nesting could be there, wherever it hides.
@pytest.mark.parametrize("body, expected_text", [
    (b'[1, 2.50]', "[1,2.50]"),
    (b'{"a": [[1e3]]}', '{"a":[[1e3]]}'),
    (b'{"e1": 2, "value": {"x": -0.0}}', '{"e1":2,"value":{"x":-0.0}}'),
    (b'{"s": "x\\": 1.5", "n": 1}', '{"s":"x\\": 1.5","n":1}'),
])
def test_decimals_anywhere_keep_their_text(body, expected_text):
    assert dump_json(parse_json(body)) == expected_text.encode()


@pytest.mark.parametrize("body", [
    b'{"a":1,"a\\u003a":2,"b":"\\u003a","a":3}',  # an escaped colon must not balance a lost key
    b'{"x":{"y":1,"y":1},"z":"\\u003a"}',
    b'[{"k":"v:w","k":"v"}]',
])
def test_duplicate_keys_are_found_despite_escaped_colons(body):
    with pytest.raises(FHIRError) as caught:
        parse_json(body)
    assert "Duplicate" in caught.value.issues[0].diagnostics


def test_nesting_limit_is_exact():
    assert parse_json(b"[" * 64 + b"]" * 64)
    assert parse_json(b'{"a":' * 63 + b"[1]" + b"}" * 63)
    with pytest.raises(FHIRError):
        parse_json(b"[" * 65 + b"]" * 65)
    with pytest.raises(FHIRError):
        parse_json(b'{"a":' * 64 + b"[1]" + b"}" * 64)


def test_integers_beyond_64_bits_stay_exact_integers():
    value = parse_json(b'{"big": [123456789012345678901234567890]}')["big"][0]
    assert type(value) is int and value == 123456789012345678901234567890


def test_an_integer_longer_than_python_converts_is_kept_as_an_exact_decimal(client):
    """A JSON integer of 5,000 digits is a valid FHIR decimal: stored and read back as sent. As an
    integer element it is out of range, a 400 at its element, not a parser message."""
    digits = "9" * 5000
    body = ('{"resourceType": "Observation", "status": "final", "code": {"text": "x"}, '
            '"valueQuantity": {"value": -%s}}' % digits).encode()
    assert dump_json(parse_json(body)) == body.replace(b", ", b",").replace(b": ", b":")
    created = client.post("/fhir/Observation", content=body, headers={"Content-Type": "application/fhir+json"})
    assert created.status_code == 201, created.text[:300]
    assert f'"value":-{digits}}}'.encode() in client.get(created.headers["location"].split("/_history")[0]).content
    refused = client.post("/fhir/Patient", content=b'{"resourceType": "Patient", "multipleBirthInteger": %s}'
                          % digits.encode(), headers={"Content-Type": "application/fhir+json"})
    assert refused.status_code == 400
    assert refused.json()["issue"][0]["expression"] == ["Patient.multipleBirth.ofType(integer)"]


def test_a_surrogate_pair_beside_a_huge_integer_is_not_an_unpaired_surrogate():
    # orjson refuses both; only the unpaired surrogate makes the body malformed
    body = b'{"x":"\\ud800\\udc00","n":123456789012345678901234567890}'
    assert parse_json(body) == {"x": "\U00010000", "n": 123456789012345678901234567890}
    with pytest.raises(FHIRError) as caught:
        parse_json(b'{"x":"\\ud800","n":123456789012345678901234567890}')
    assert "unpaired" in caught.value.issues[0].diagnostics


@pytest.mark.parametrize("body, kept", [
    (b'{"resourceType":"Patient","photo":[{"size":-0}]}', "Patient.photo[0].size"),  # unsignedInt: [0]|([1-9]..)
    (b'{"resourceType":"Questionnaire","status":"draft","item":[{"linkId":"a","type":"string","maxLength":-0}]}', None),
])
def test_negative_zero_is_an_integer_but_not_an_unsigned_one(body, kept):
    """R4's integer regex allows -0; unsignedInt's ([0]|([1-9][0-9]*)) does not."""
    from ipt_fhir.fhir.validation import validate_resource

    errors = [i for i in validate_resource(parse_json(body)) if i.is_error]
    assert [e.expression[0] for e in errors] == ([kept] if kept else [])


@pytest.mark.parametrize("text, found", [
    ('{"a":-0}', True), ('{"a": [1,\n -0 ]}', True), ("-0", True), (b'{"a":-0}', True),
    # where no JSON value starts: inside a uuid, an identifier, a date
    ('{"fullUrl":"urn:uuid:1b2c9e4f-0a3f-4c2d-8e1f-0b9a8c7d6e5f"}', False), ('{"v":"ABC-0"}', False),
    (b'{"v":"ABC-0"}', False), ('{"d":"2020-01-05"}', False), ('{"a":-0.0}', False),
])
def test_only_a_negative_zero_value_leaves_the_fast_parser(text, found):
    """A body leaves orjson for the slower sign-keeping parser only for an actual -0 value: uuids hold
    "-0" followed by a hex letter often enough that every large transaction would otherwise take it."""
    from ipt_fhir.fhir.jsonio import _has_signed_zero

    assert _has_signed_zero(text) is found
