from __future__ import annotations

import pytest

from ipt_fhir.domain.protocols import all_protocols, get_protocol, protocol_for_careplan


def test_the_five_protocols_come_from_their_plan_definitions():
    got = {p.id: (p.min_sessions, p.typical_sessions, p.max_sessions, p.interval, p.interval_unit, p.format)
           for p in all_protocols()}
    assert got == {
        "ipt-standard-individual": (12, 16, 20, 1, "wk", "individual"),
        "ipt-who-group": (8, 8, 8, 1, "wk", "group"),
        "ipt-dynamic-interpersonal": (16, 16, 16, 1, "wk", "dynamic-interpersonal"),
        "ipt-brief": (8, 10, 12, 2, "wk", "brief"),
        "ipt-maintenance": (6, 12, 36, 1, "mo", "individual"),
    }


def test_standard_sessions_last_50_to_60_minutes():
    p = get_protocol("ipt-standard-individual")
    assert (p.session_minutes, p.session_minutes_max) == (50, 60)


@pytest.mark.parametrize("total,lengths", [(12, (3, 7, 2)), (16, (3, 10, 3)), (20, (3, 13, 4))])
def test_standard_initial_is_sessions_1_to_3_and_termination_the_last_2_to_4(total, lengths):
    p = get_protocol("ipt-standard-individual")
    assert p.phase_lengths(total) == lengths
    phases = [p.phase_for(n, total) for n in range(1, total + 1)]
    assert phases[:3] == ["initial"] * 3 and phases[3] == "middle"
    assert phases[-lengths[2]:] == ["termination"] * lengths[2]


def test_sessions_beyond_the_planned_total_extend_termination():
    assert get_protocol("ipt-standard-individual").phase_for(14, 12) == "termination"


def test_short_courses_shrink_termination_first():
    p = get_protocol("ipt-standard-individual")
    assert p.phase_lengths(4) == (3, 0, 1)
    assert p.phase_lengths(2) == (2, 0, 0)


def test_group_dit_and_brief_phase_boundaries():
    assert get_protocol("ipt-who-group").phase_lengths(8) == (2, 4, 2)
    assert get_protocol("ipt-dynamic-interpersonal").phase_lengths(16) == (4, 8, 4)
    assert get_protocol("ipt-brief").phase_lengths(10) == (2, 6, 2)


def test_maintenance_is_all_one_phase():
    p = get_protocol("ipt-maintenance")
    assert {p.phase_for(n, 12) for n in range(1, 13)} == {"maintenance"}
    assert p.initial_phase_end(12) == 0


def test_courses_over_five_months():
    assert get_protocol("ipt-dynamic-interpersonal").course_months == 5
    assert get_protocol("ipt-brief").course_months == 5


def test_protocol_found_by_canonical_url_under_any_base_and_version():
    assert get_protocol("https://fhir.example.org/base/PlanDefinition/ipt-brief|0.1.0").id == "ipt-brief"
    assert get_protocol("https://fhir.example.org/base/Questionnaire/ipt-brief") is None
    assert get_protocol("nope") is None


def test_careplan_without_a_known_protocol_defaults_to_standard_individual():
    assert protocol_for_careplan({"instantiatesCanonical": ["http://x/PlanDefinition/other"]}).id == \
        "ipt-standard-individual"
    assert protocol_for_careplan({"instantiatesCanonical": ["http://x/PlanDefinition/ipt-who-group"]}).id == \
        "ipt-who-group"
