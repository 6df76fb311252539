"""The validator under concurrent first use."""
from __future__ import annotations

import threading
import time


def test_a_type_being_compiled_is_not_used_half_built_by_another_thread(monkeypatch):
    """Compiled type trees are published only when complete: a thread asking for a type while another
    is compiling it waits, and never validates against a half-built node (that used to give a 500 on
    the first concurrent creates of a fresh process). The compiling thread is held just after it has
    made the type's root node, so the other thread certainly asks at that moment."""
    from ipt_fhir.fhir.validation import compiler, validate_resource

    monkeypatch.setattr(compiler, "_type_nodes", {})
    compiling = threading.Event()
    real_invariants = compiler._invariants

    def held_invariants(ids, constraints, fp_base):  # noqa: ANN001, ANN202 - runs right after the root exists
        if fp_base == "CarePlan" and not compiling.is_set():
            compiling.set()
            time.sleep(0.3)  # the other thread asks for CarePlan now
        return real_invariants(ids, constraints, fp_base)

    monkeypatch.setattr(compiler, "_invariants", held_invariants)
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

    first = threading.Thread(target=validate)
    first.start()
    assert compiling.wait(30)
    second = threading.Thread(target=validate)
    second.start()
    first.join()
    second.join()
    assert failures == []
