"""String (case/accent-insensitive prefix, :exact, :contains) and token forms (search.html#string, #token)."""
from __future__ import annotations

import pytest

from ipt_fhir.fhir.outcome import FHIRError


@pytest.fixture
def people(engine):
    engine.put({"resourceType": "Patient", "id": "eloise", "gender": "female",
                "name": [{"family": "Müller", "given": ["Éloïse", "Anne"]}],
                "identifier": [{"system": "urn:mrn", "value": "M1",
                                "type": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v2-0203",
                                                     "code": "MR"}]}}],
                "address": [{"city": "Zürich", "postalCode": "8001"}]})
    engine.put({"resourceType": "Patient", "id": "bob", "gender": "male", "active": True,
                "name": [{"family": "Muller", "given": ["Bob"]}],
                "identifier": [{"system": "urn:other", "value": "M1"}, {"value": "nosys"}]})
    return engine


@pytest.mark.parametrize("query,expected", [
    ("name=eloise", {"eloise"}),
    ("name=ELO", {"eloise"}),
    ("name=mull", {"eloise", "bob"}),
    ("family=müller", {"eloise", "bob"}),
    ("family:exact=Müller", {"eloise"}),
    ("family:exact=müller", set()),
    ("family:exact=Muller", {"bob"}),
    ("name:contains=ois", {"eloise"}),
    ("name:contains=ULL", {"eloise", "bob"}),
    ("given=anne", {"eloise"}),
    ("address-city=zurich", {"eloise"}),
    ("name=eloise,bob", {"eloise", "bob"}),
    ("name=mull&given=bob", {"bob"}),
    ("name=ller", set()),
])
def test_string_matching(people, query, expected):
    assert people.ids("Patient", query) == expected


@pytest.mark.parametrize("query,expected", [
    ("gender=female", {"eloise"}),
    ("gender=female,male", {"eloise", "bob"}),
    ("identifier=M1", {"eloise", "bob"}),
    ("identifier=urn:mrn|M1", {"eloise"}),
    ("identifier=urn:mrn|", {"eloise"}),
    ("identifier=|nosys", {"bob"}),
    ("identifier=|M1", set()),
    ("gender:not=female", {"bob"}),
    ("active=true", {"bob"}),
    ("active:missing=true", {"eloise"}),
    ("identifier:of-type=http://terminology.hl7.org/CodeSystem/v2-0203|MR|M1", {"eloise"}),
    ("gender:in=http://hl7.org/fhir/ValueSet/administrative-gender", {"eloise", "bob"}),
    ("gender:not-in=http://hl7.org/fhir/ValueSet/administrative-gender", set()),
    ("_id=bob", {"bob"}),
    ("_id=bob,eloise", {"bob", "eloise"}),
])
def test_token_forms(people, query, expected):
    assert people.ids("Patient", query) == expected


def test_token_text_matches_display_and_text(engine):
    engine.put({"resourceType": "Condition", "id": "c1", "subject": {"reference": "Patient/x"},
                "code": {"coding": [{"system": "http://snomed.info/sct", "code": "35489007",
                                     "display": "Depressive disorder"}], "text": "Dépression majeure"}})
    assert engine.ids("Condition", "code:text=depressive") == {"c1"}
    assert engine.ids("Condition", "code:text=disorder") == {"c1"}
    assert engine.ids("Condition", "code:text=depression") == {"c1"}
    assert engine.ids("Condition", "code:text=anxiety") == set()


def test_in_and_not_in_a_stored_value_set(engine):
    """search.html#modifiers `in`: whether the coding is in the value set; a coding without a system is in
    no set that names one (#token: `|code` keeps a missing system apart from every real one)."""
    cs, other = "http://ex.org/cs", "http://other.org/cs"
    engine.put({"resourceType": "ValueSet", "id": "two", "status": "active", "url": "http://ex.org/vs/two",
                "compose": {"include": [{"system": cs, "concept": [{"code": "t1"}, {"code": "t2"}]}]}})
    engine.put({"resourceType": "ValueSet", "id": "whole", "status": "active", "url": "http://ex.org/vs/all",
                "compose": {"include": [{"system": cs}]}})
    engine.put({"resourceType": "ValueSet", "id": "less", "status": "active", "url": "http://ex.org/vs/less",
                "compose": {"include": [{"system": cs, "concept": [{"code": "t1"}, {"code": "t2"}]}],
                            "exclude": [{"system": cs, "concept": [{"code": "t2"}]}]}})
    for oid, coding in (("t1", {"system": cs, "code": "t1"}), ("t2", {"system": cs, "code": "t2"}),
                        ("t3", {"system": cs, "code": "t3"}), ("nosys", {"code": "t1"}),
                        ("other", {"system": other, "code": "t1"})):
        engine.put({"resourceType": "Observation", "id": oid, "status": "final", "code": {"coding": [coding]}})

    assert engine.ids("Observation", "code:in=http://ex.org/vs/two") == {"t1", "t2"}
    assert engine.ids("Observation", "code:not-in=http://ex.org/vs/two") == {"t3", "nosys", "other"}
    assert engine.ids("Observation", "code:in=http://ex.org/vs/all") == {"t1", "t2", "t3"}  # a whole code system
    assert engine.ids("Observation", "code:in=http://ex.org/vs/less") == {"t1"}
    assert engine.ids("Observation", "code:in=ValueSet/two") == {"t1", "t2"}


def test_a_value_set_whose_codes_are_not_enumerated_is_not_known(engine):
    engine.put({"resourceType": "ValueSet", "id": "f", "status": "active", "url": "http://ex.org/vs/f",
                "compose": {"include": [{"system": "http://ex.org/cs", "filter": [
                    {"property": "concept", "op": "is-a", "value": "t1"}]}]}})
    with pytest.raises(FHIRError) as exc:
        engine.ids("Observation", "code:in=http://ex.org/vs/f")
    assert exc.value.status == 400


def test_unknown_valueset_in_is_an_error(people):
    with pytest.raises(FHIRError) as exc:
        people.ids("Patient", "gender:in=http://example.org/ValueSet/nope")
    assert exc.value.status == 400


@pytest.mark.parametrize("query", ["active=maybe", "active=True", "active=1", "active:not=yes", "active=true,no"])
def test_a_boolean_token_takes_true_or_false_only(people, query):
    """A value no boolean can have is malformed (400), not a search matching nothing."""
    with pytest.raises(FHIRError) as exc:
        people.ids("Patient", query)
    assert exc.value.status == 400
    assert exc.value.issues[0].expression == (query.partition("=")[0],)


@pytest.mark.parametrize("value", ["87.62960243186684", "0.1234567890123456789", "1234567.123456789012"])
def test_a_value_with_more_digits_than_a_double_holds_finds_itself(engine, value):
    """Its implicit range is narrower than the spacing of doubles; it still holds the value written."""
    engine.put({"resourceType": "Observation", "id": "w", "status": "final", "code": {"text": "weight"},
                "valueQuantity": {"value": float(value), "system": "http://unitsofmeasure.org", "code": "kg"}})
    engine.put({"resourceType": "Observation", "id": "other", "status": "final", "code": {"text": "weight"},
                "valueQuantity": {"value": float(value) * 1.000001, "system": "http://unitsofmeasure.org", "code": "kg"}})
    assert engine.ids("Observation", f"value-quantity={value}") == {"w"}
    assert engine.ids("Observation", f"value-quantity=ne{value}") == {"other"}


def test_number_and_quantity(engine):
    for oid, v in (("q1", 5.4), ("q2", 100), ("q3", 99.6)):
        engine.put({"resourceType": "Observation", "id": oid, "status": "final", "code": {"text": "x"},
                    "valueQuantity": {"value": v, "system": "http://unitsofmeasure.org", "code": "mg", "unit": "mg"}})
    assert engine.ids("Observation", "value-quantity=100") == {"q2", "q3"}  # [99.5, 100.5)
    assert engine.ids("Observation", "value-quantity=100.0") == {"q2"}
    assert engine.ids("Observation", "value-quantity=1e2") == {"q2", "q3"}  # [95, 105), search.html#number
    assert engine.ids("Observation", "value-quantity=1e1") == set()  # [9.5, 10.5), not [5, 15) with 5.4
    assert engine.ids("Observation", "value-quantity=1.00e2") == {"q2"}  # [99.95, 100.05)
    assert engine.ids("Observation", "value-quantity=gt99.6") == {"q2"}
    assert engine.ids("Observation", "value-quantity=le5.4|http://unitsofmeasure.org|mg") == {"q1"}
    assert engine.ids("Observation", "value-quantity=5.4||kg") == set()
    assert engine.ids("Observation", "value-quantity=ne100") == {"q1"}
    with pytest.raises(FHIRError):
        engine.ids("Observation", "value-quantity=zz100")


def test_uri_below_and_above(engine):
    engine.put({"resourceType": "ValueSet", "id": "v1", "status": "active", "url": "http://acme.org/fhir/ValueSet/a"})
    engine.put({"resourceType": "ValueSet", "id": "v2", "status": "active", "url": "http://acme.org/other"})
    engine.put({"resourceType": "ValueSet", "id": "v3", "status": "active", "url": "http://acme.org/fhirx",
                "jurisdiction": [{"text": "acme"}]})
    assert engine.ids("ValueSet", "url=http://acme.org/fhir/ValueSet/a") == {"v1"}
    # by path segment, as :above: a longer sibling name is not below
    assert engine.ids("ValueSet", "url:below=http://acme.org/fhir") == {"v1"}
    assert engine.ids("ValueSet", "url:below=http://acme.org/fhir/") == {"v1"}
    assert engine.ids("ValueSet", "url:below=http://acme.org/fhir/ValueSet/a") == {"v1"}
    assert engine.ids("ValueSet", "url:below=http://acme.org/fhir/Value") == set()
    assert engine.ids("ValueSet", "url:below=http://acme.org") == {"v1", "v2", "v3"}
    # beside a :text clause the search runs through the SQLAlchemy builder: the same answer
    assert engine.ids("ValueSet", "url:below=http://acme.org/fhir&jurisdiction:text=acme") == set()
    assert engine.ids("ValueSet", "url:below=http://acme.org&jurisdiction:text=acme") == {"v3"}
    assert engine.ids("ValueSet", "url:below=http://acme.org/fhirx&jurisdiction:text=acme") == {"v3"}  # itself
    assert engine.ids("ValueSet", "url:above=http://acme.org/fhir/ValueSet/a/extra") == {"v1"}


def test_composite_code_value_quantity(engine):
    engine.put({"resourceType": "Observation", "id": "bp", "status": "final", "code": {"text": "bp"},
                "component": [
                    {"code": {"coding": [{"system": "http://loinc.org", "code": "8480-6"}]},
                     "valueQuantity": {"value": 150, "system": "http://unitsofmeasure.org", "code": "mm[Hg]"}},
                    {"code": {"coding": [{"system": "http://loinc.org", "code": "8462-4"}]},
                     "valueQuantity": {"value": 90, "system": "http://unitsofmeasure.org", "code": "mm[Hg]"}}]})
    q = "component-code-value-quantity"
    assert engine.ids("Observation", f"{q}=http://loinc.org|8480-6$gt140") == {"bp"}
    # the pair must come from the same component: systolic is not 90
    assert engine.ids("Observation", f"{q}=http://loinc.org|8480-6$lt100") == set()
    assert engine.ids("Observation", f"{q}=8462-4$90") == {"bp"}


def test_escapes_inside_a_composite_component_are_literals(engine):
    """search.html#escaping: \\| is a literal | in any value; a component's own parser splits on the | it
    holds, so the $ split must keep its escapes (they used to be removed first: 400, or system x code y)."""
    engine.put({"resourceType": "Observation", "id": "esc", "status": "final",
                "code": {"coding": [{"system": "http://ex.org/cs", "code": "a|b"}]},
                "valueCodeableConcept": {"coding": [{"system": "http://ex.org/cs", "code": "x|y"}]}})
    assert engine.ids("Observation", "code-value-concept=http://ex.org/cs|a\\|b$http://ex.org/cs|x\\|y") == {"esc"}
    assert engine.ids("Observation", "code-value-concept=a\\|b$x\\|y") == {"esc"}
    assert engine.ids("Observation", "code-value-concept=a\\|b$x") == set()


def test_a_composite_component_may_read_the_resource_of_its_element(engine):
    """MolecularSequence chromosome-variant-coordinate: each variant's start and end with the resource's
    chromosome (`%resource.referenceSeq.chromosome`, the R4 definition); it used to match nothing."""
    engine.put({"resourceType": "MolecularSequence", "id": "ms", "type": "dna", "coordinateSystem": 0,
                "referenceSeq": {"chromosome": {"coding": [
                    {"system": "http://terminology.hl7.org/CodeSystem/chromosome-human", "code": "1"}]},
                    "referenceSeqId": {"coding": [{"system": "http://www.ncbi.nlm.nih.gov/nuccore", "code": "NC_000001.11"}]},
                    "genomeBuild": "GRCh38", "windowStart": 100, "windowEnd": 500},
                "variant": [{"start": 150, "end": 151}, {"start": 300, "end": 302}]})
    assert engine.ids("MolecularSequence", "chromosome-variant-coordinate=1$150$151") == {"ms"}
    assert engine.ids("MolecularSequence", "chromosome-variant-coordinate=1$gt123$lt345") == {"ms"}
    assert engine.ids("MolecularSequence", "chromosome-variant-coordinate=2$150$151") == set()
    assert engine.ids("MolecularSequence", "chromosome-variant-coordinate=1$150$302") == set()  # one variant's pair
    assert engine.ids("MolecularSequence", "referenceseqid-variant-coordinate=NC_000001.11$300$302") == {"ms"}


def test_composite_missing_sees_an_element_whose_components_have_no_value(engine):
    """search.html#modifiers: `:missing=true` is for resources without a value for the parameter. A
    Group.characteristic whose code is text only, or whose value is a Reference (which the `value` component
    does not read), is still a value of characteristic-value; it used to count as missing."""
    engine.put({"resourceType": "Group", "id": "text-code", "type": "person", "actual": True,
                "characteristic": [{"code": {"text": "gender"}, "valueBoolean": True, "exclude": False}]})
    engine.put({"resourceType": "Group", "id": "coded", "type": "person", "actual": True,
                "characteristic": [{"code": {"coding": [{"system": "http://example.org", "code": "smoker"}]},
                                    "valueCodeableConcept": {"coding": [{"system": "http://example.org", "code": "yes"}]},
                                    "exclude": False}]})
    engine.put({"resourceType": "Group", "id": "none", "type": "person", "actual": True})
    q = "characteristic-value"
    assert engine.ids("Group", f"{q}:missing=true") == {"none"}
    assert engine.ids("Group", f"{q}:missing=false") == {"text-code", "coded"}
    # the valueless row matches no value search
    assert engine.ids("Group", f"{q}=http://example.org|smoker$http://example.org|yes") == {"coded"}
    assert engine.ids("Group", f"{q}=smoker$yes") == {"coded"}


def test_composite_missing_of_a_resource_rooted_composite_asks_for_its_values(engine):
    """Observation's code-value-* composites are rooted at the Observation itself: present or missing is
    whether the Observation has such a value, not whether it exists (a valueless row for every Observation
    made `code-value-quantity:missing=true` find none)."""
    engine.put({"resourceType": "Observation", "id": "text", "status": "final", "code": {"text": "note"},
                "valueString": "fine"})
    engine.put({"resourceType": "Observation", "id": "qty", "status": "final",
                "code": {"coding": [{"system": "http://loinc.org", "code": "29463-7"}]},
                "valueQuantity": {"value": 70, "system": "http://unitsofmeasure.org", "code": "kg"}})
    assert engine.ids("Observation", "code-value-quantity:missing=true") == {"text"}
    assert engine.ids("Observation", "code-value-quantity:missing=false") == {"qty"}
    assert engine.ids("Observation", "code-value-concept:missing=false") == set()
