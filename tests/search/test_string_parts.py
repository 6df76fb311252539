"""String search on HumanName and Address matches their string parts only, never their codes.

R4 SearchParameter definitions: individual-address "may match any of the string fields in the Address,
including line, city, district, state, country, postalCode, and/or text"; Patient-name, individual-given
etc. "any of the string fields in the HumanName, including family, give, prefix, suffix, suffix, and/or
text". `use` and `type` are codes (searchable with address-use / address-type tokens, not as strings).
"""
from __future__ import annotations

import pytest

from ipt_fhir.fhir.search.extract import string_values


@pytest.fixture
def text_only(engine):
    engine.put({"resourceType": "Patient", "id": "john",
                "name": [{"use": "official", "text": "John Smith", "period": {"start": "2000"}}],
                "address": [{"use": "home", "type": "postal", "text": "42 Elm Road"}]})
    engine.put({"resourceType": "Patient", "id": "dana",
                "name": [{"use": "usual", "prefix": ["Dr"], "suffix": ["PhD"], "text": "Dr Dana Weiss PhD"}]})
    engine.put({"resourceType": "Practitioner", "id": "weiss",
                "name": [{"use": "official", "text": "Dana Weiss"}],
                "address": [{"use": "work", "type": "both", "city": "Bern"}]})
    return engine


@pytest.mark.parametrize("rt,query,expected", [
    ("Patient", "name=official", set()),
    ("Patient", "name=usual", set()),
    ("Patient", "name=john", {"john"}),
    ("Patient", "name:contains=smith", {"john"}),
    ("Patient", "address=home", set()),
    ("Patient", "address=postal", set()),
    ("Patient", "address=42", {"john"}),
    ("Patient", "address:contains=elm", {"john"}),
    ("Patient", "address-use=home", {"john"}),  # the code stays searchable as the token it is
    ("Patient", "name=dr", {"dana"}),  # prefix and suffix are string parts even without family/given
    ("Patient", "name=phd", {"dana"}),
    ("Patient", "phonetic=official", set()),
    ("Practitioner", "name=official", set()),
    ("Practitioner", "name=dana", {"weiss"}),
    ("Practitioner", "address=work", set()),
    ("Practitioner", "address=both", set()),
    ("Practitioner", "address=bern", {"weiss"}),
])
def test_codes_of_names_and_addresses_are_not_string_values(text_only, rt, query, expected):
    assert text_only.ids(rt, query) == expected


@pytest.mark.parametrize("value,hint,expected", [
    ({"use": "official", "text": "John Smith"}, None, ["John Smith"]),
    ({"use": "official", "text": "John Smith"}, "HumanName", ["John Smith"]),
    ({"use": "maiden", "family": "Ng", "given": ["Ann", "Li"], "prefix": ["Ms"], "suffix": ["MSc"], "id": "n1"},
     None, ["Ng", "Ann", "Li", "Ms", "MSc"]),
    ({"use": "home", "type": "postal", "text": "42 Elm Road"}, None, ["42 Elm Road"]),
    ({"use": "home", "type": "postal", "text": "42 Elm Road"}, "Address", ["42 Elm Road"]),
    ({"use": "work", "type": "both", "line": ["1 Main St", "Floor 2"], "city": "Bern", "district": "BE",
      "state": "BE", "postalCode": "3000", "country": "CH", "id": "a1"},
     None, ["1 Main St", "Floor 2", "Bern", "BE", "BE", "3000", "CH"]),
])
def test_string_values_of_complex_types(value, hint, expected):
    assert sorted(string_values(value, hint)) == sorted(expected)


@pytest.mark.parametrize("value,hint,codes", [
    ({"system": "phone", "value": "555-0100", "use": "home", "rank": 1}, "ContactPoint", {"phone", "home"}),
    ({"system": "phone", "value": "555-0100", "use": "home"}, None, {"phone", "home"}),
    ({"system": "http://loinc.org", "code": "44261-6", "display": "PHQ-9"}, None, {"http://loinc.org", "44261-6"}),
    ({"use": "official", "system": "urn:mrn", "value": "M1"}, None, {"official", "urn:mrn"}),
])
def test_no_code_of_another_complex_type_is_a_string_value(value, hint, codes):
    # No R4 string parameter reaches these types; should one ever, its codes still must not match.
    assert not codes & set(string_values(value, hint))
