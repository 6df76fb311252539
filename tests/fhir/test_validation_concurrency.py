"""The validator under concurrent first use."""
from __future__ import annotations


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
