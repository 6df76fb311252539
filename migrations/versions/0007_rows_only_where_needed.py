"""Index rows only where a search needs them: `_lastUpdated` and reference aliases lose theirs.

Every index row costs a B-tree insert per index at write time (a WAL page on SQLite, index
maintenance on PostgreSQL). Two kinds of rows duplicated what was already stored:
- `_lastUpdated` had a search_date row (table + 3 indexes) per resource; the resource row's
  `last_updated` column says the same, now indexed with resource_type (one index).
- A reference alias such as `Observation.patient` (`subject.where(resolve() is Patient)`) had a copy of
  its base parameter's rows; searches now read the base's rows narrowed to the target type. Their
  `:identifier` token rows stay (the token table has no target type).

The alias list is frozen here as it was computed from the R4 definitions (registry.reference_alias):
a migration must not depend on live code.

Revision ID: 0007_rows_only_where_needed
Revises: 0006_leaner_reference_index
"""
from alembic import op
import sqlalchemy as sa

revision = "0007_rows_only_where_needed"
down_revision = "0006_leaner_reference_index"
branch_labels = None
depends_on = None

# (alias, base parameter, target type) → the resource types that have it
ALIASES = {
    ("location", "actor", "Location"): ("Appointment", "AppointmentResponse"),
    ("patient", "actor", "Patient"): ("Appointment", "AppointmentResponse"),
    ("patient", "link", "Patient"): ("Person",),
    ("patient", "subject", "Patient"): (
        "Account", "Basic", "CarePlan", "CareTeam", "ChargeItem", "ClinicalImpression", "Communication",
        "CommunicationRequest", "Composition", "Condition", "Contract", "DeviceRequest",
        "DiagnosticReport", "DocumentManifest", "DocumentReference", "Encounter", "Flag", "Goal",
        "GuidanceResponse", "ImagingStudy", "Invoice", "List", "MeasureReport", "Media",
        "MedicationAdministration", "MedicationDispense", "MedicationRequest", "MedicationStatement",
        "Observation", "Procedure", "QuestionnaireResponse", "RequestGroup", "RiskAssessment",
        "ServiceRequest", "Specimen", "Task"),
    ("patient", "target", "Patient"): ("Provenance",),
    ("practitioner", "actor", "Practitioner"): ("Appointment", "AppointmentResponse"),
    ("practitioner", "link", "Practitioner"): ("Person",),
    ("practitioner", "participant", "Practitioner"): ("Encounter",),
    ("relatedperson", "link", "RelatedPerson"): ("Person",),
}

_REFERENCE_COLUMNS = "resource_id, target_type, target_id, target_version, url"


def upgrade() -> None:
    op.create_index("ix_resource_type_last_updated", "resource", ["resource_type", "last_updated"])
    op.execute("DELETE FROM search_date WHERE param = '_lastUpdated'")
    for (alias, _base, _target), types in ALIASES.items():
        op.execute(sa.text("DELETE FROM search_reference WHERE param = :alias AND resource_type IN :types")
                   .bindparams(sa.bindparam("types", expanding=True)).bindparams(alias=alias, types=list(types)))


def downgrade() -> None:
    for (alias, base, target), types in ALIASES.items():
        op.execute(sa.text(
            f"INSERT INTO search_reference (resource_type, param, {_REFERENCE_COLUMNS}) "
            f"SELECT resource_type, :alias, {_REFERENCE_COLUMNS} FROM search_reference "
            "WHERE param = :base AND target_type = :target AND resource_type IN :types")
            .bindparams(sa.bindparam("types", expanding=True))
            .bindparams(alias=alias, base=base, target=target, types=list(types)))
    if op.get_bind().dialect.name == "postgresql":
        micros = "(extract(epoch FROM last_updated) * 1000000)::bigint"
    else:  # stored as 'YYYY-MM-DD HH:MM:SS.ffffff' UTC
        micros = "(CAST(strftime('%s', last_updated) AS INTEGER) * 1000000 + CAST(substr(last_updated, 21, 6) AS INTEGER))"
    op.execute(f"INSERT INTO search_date (resource_type, resource_id, param, low, high) "
               f"SELECT resource_type, id, '_lastUpdated', {micros}, {micros} + 1 FROM resource WHERE NOT deleted")
    op.drop_index("ix_resource_type_last_updated", table_name="resource")
