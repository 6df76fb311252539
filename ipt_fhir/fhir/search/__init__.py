"""FHIR search machinery that needs no database: the parameter registry, value parsing and index extraction."""
