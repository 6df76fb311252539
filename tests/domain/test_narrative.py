from __future__ import annotations

import xml.etree.ElementTree as ET

from ipt_fhir.domain.narrative import careplan_narrative, is_generated_by_us, with_narrative
from ipt_fhir.domain.progress import compute_progress
from ipt_fhir.fhir.validation import validate_resource

from .test_progress import course_world, full


def test_generated_narrative_is_well_formed_xhtml_with_the_figures():
    world, scores = course_world()
    text = careplan_narrative(world.plan, full(world, scores))
    assert text["status"] == "generated"
    root = ET.fromstring(text["div"])
    assert root.tag == "{http://www.w3.org/1999/xhtml}div"
    flat = "".join(root.itertext())
    assert "6 attended of 12 planned, 1 missed, 5 remaining" in flat
    assert "Role dispute" in flat and "baseline 20" in flat and "latest 9" in flat and "responding" in flat
    assert "<script" not in text["div"]


def test_narrative_escapes_client_text():
    world, _ = course_world()
    plan = world.plan
    plan["title"] = "<script>alert(1)</script> & co"
    div = careplan_narrative(plan)["div"]
    assert "<script>" not in div and "&lt;script&gt;" in div
    ET.fromstring(div)


def test_careplan_with_our_narrative_is_valid_r4():
    world, scores = course_world()
    plan = with_narrative(world.plan, full(world, scores))
    assert [i for i in validate_resource(plan) if i.is_error] == []


def test_our_narrative_is_regenerated_and_a_clients_is_kept():
    world, scores = course_world()
    plan = world.plan
    assert is_generated_by_us(plan["text"])
    updated = with_narrative(plan, full(world, scores))
    assert updated["text"] != plan["text"] and is_generated_by_us(updated["text"])

    own = dict(plan, text={"status": "generated", "div": '<div xmlns="http://www.w3.org/1999/xhtml">Mine</div>'})
    assert with_narrative(own, full(world, scores)) is own
    extensions_only = dict(plan, text={"status": "extensions", "div": plan["text"]["div"]})
    assert with_narrative(extensions_only) is extensions_only


def test_missing_narrative_is_added_and_unchanged_is_the_same_object():
    world, _ = course_world()
    plan = {k: v for k, v in world.plan.items() if k != "text"}
    once = with_narrative(plan, compute_progress(plan))
    assert is_generated_by_us(once["text"])
    assert with_narrative(once, compute_progress(plan)) is once
