"""IPT layer, plain Python (no FastAPI, no SQLAlchemy).

    conformance_loader.load_conformance(base)        CodeSystems, ValueSets, StructureDefinitions, PlanDefinitions
    protocols.get_protocol(id_or_url)                protocol data read from the PlanDefinitions
    apply.parse_apply_parameters / apply_protocol    PlanDefinition/$apply -> transaction Bundle
    rules.check(resource, previous, lookup)          cross-resource rules -> OperationOutcome issues
    progress.PlanProgress / apply_change / plans_affected   $ipt-progress read-model row
    narrative.with_narrative(careplan, progress)     CarePlan narrative, kept when client-written
    demo_data.generate_courses(n, seed, base)        deterministic demo transaction Bundles
    lookup.ResourceLookup / InMemoryLookup           the read/search port the store implements
"""
