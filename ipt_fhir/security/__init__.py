"""Security: SMART on FHIR authorization (tokens, scopes, patient compartment), audit trail, privacy labels.

Enforcement is split on purpose: the HTTP dependency (api/security_deps.py) authenticates and refuses
whole requests early; `guard` is called by the services where results are produced, so batch and
transaction entries, includes, history and operations are checked by the same code as plain requests.
"""
