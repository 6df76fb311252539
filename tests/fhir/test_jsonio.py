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


def test_validator_compiles_types_safely_under_concurrent_first_use():
    """Compiled type trees are published only when complete: threads racing on a fresh process's first
    validations never see a half-built node (it used to give a 500 on the first concurrent creates)."""
    import threading

    from ipt_fhir.fhir.validation import compiler, validate_resource

    saved = dict(compiler._type_nodes)
    compiler._type_nodes.clear()
    resource = {"resourceType": "CarePlan", "status": "active", "intent": "plan",
                "subject": {"reference": "Patient/1"},
                "activity": [{"detail": {"status": "scheduled", "code": {"text": "IPT session"}}}]}
    failures: list[str] = []

    def validate() -> None:
        try:
            errors = [i for i in validate_resource(resource, expected_type="CarePlan") if i.is_error]
            if errors:
                failures.append(repr(errors))
        except Exception as exc:  # noqa: BLE001 - what the test is looking for
            failures.append(repr(exc))

    try:
        threads = [threading.Thread(target=validate) for _ in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    finally:
        compiler._type_nodes.update(saved)
    assert failures == []
