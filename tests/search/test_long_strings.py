"""Strings longer than the 255-character indexed prefix: :contains, long prefixes and :exact see all of it."""
from __future__ import annotations

import pytest

FILLER = "Interpersonal psychotherapy focuses on grief, role disputes and role transitions. " * 5  # ~410 chars


@pytest.fixture
def plans(engine):
    engine.put({"resourceType": "CarePlan", "id": "long", "status": "active", "intent": "plan",
                "subject": {"reference": "Patient/p1"}, "title": "t",
                "description": FILLER + "Tail words: Zanzibar Ménière."})
    engine.put({"resourceType": "CarePlan", "id": "short", "status": "active", "intent": "plan",
                "subject": {"reference": "Patient/p1"}, "description": "Zanzibar early"})
    engine.put({"resourceType": "Patient", "id": "p1", "name": [{"family": "X" * 300 + "Tail"}]})
    return engine


def test_contains_finds_text_past_255_characters(plans):
    assert len(FILLER) > 300
    assert plans.ids("Patient", [("family:contains", "xtail")]) == {"p1"}
    assert plans.ids("Patient", [("family:contains", "XXXX")]) == {"p1"}
    assert plans.ids("Patient", [("family:contains", "nope")]) == set()


def test_prefix_longer_than_255_characters(plans):
    assert plans.ids("Patient", [("family", "x" * 300 + "ta")]) == {"p1"}
    assert plans.ids("Patient", [("family", "x" * 300 + "to")]) == set()
    assert plans.ids("Patient", [("family", "x" * 10)]) == {"p1"}


def test_exact_on_long_strings(plans):
    assert plans.ids("Patient", [("family:exact", "X" * 300 + "Tail")]) == {"p1"}
    assert plans.ids("Patient", [("family:exact", "X" * 300 + "Tai")]) == set()
    assert plans.ids("Patient", [("family:exact", "X" * 300 + "TAIL")]) == set()


def test_token_text_of_long_displays_still_indexes(engine):
    engine.put({"resourceType": "Condition", "id": "c1", "subject": {"reference": "Patient/p1"},
                "code": {"text": "Depression " + "very " * 80}})
    assert engine.ids("Condition", [("code:text", "depression very")]) == {"c1"}
