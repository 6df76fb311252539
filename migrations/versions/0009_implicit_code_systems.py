"""Token rows of plain `code` elements carry their value set's code system.

search.html#token: for a code, "the system is implicit (defined in the value set)". Index rows of such
parameters (Patient.gender, Observation.status, CarePlan.intent…) were written without a system, so
`Patient?gender=http://hl7.org/fhir/administrative-gender|male` found nothing. New rows carry the system
(fhir/search/indexer.py implicit_system); this gives existing rows the same.

The (parameter, system) → resource types table is frozen here as computed from the R4 definitions:
a migration must not depend on live code.

Revision ID: 0009_implicit_code_systems
Revises: 0008_lz4_stored_json
"""
from alembic import op
import sqlalchemy as sa

revision = "0009_implicit_code_systems"
down_revision = "0008_lz4_stored_json"
branch_labels = None
depends_on = None

IMPLICIT_SYSTEMS = {
    ('action', 'http://hl7.org/fhir/audit-event-action'): ('AuditEvent',),
    ('actuality', 'http://hl7.org/fhir/adverse-event-actuality'): ('AdverseEvent',),
    ('address-use', 'http://hl7.org/fhir/address-use'): (
        'InsurancePlan', 'Location', 'Organization', 'Patient', 'Person', 'Practitioner', 'RelatedPerson',
    ),
    ('base', 'http://hl7.org/fhir/resource-types'): ('SearchParameter',),
    ('category', 'http://hl7.org/fhir/allergy-intolerance-category'): ('AllergyIntolerance',),
    ('category', 'http://hl7.org/fhir/message-significance-category'): ('MessageDefinition',),
    ('category', 'http://hl7.org/fhir/metric-category'): ('DeviceMetric',),
    ('code', 'http://hl7.org/fhir/compartment-type'): ('CompartmentDefinition',),
    ('code', 'http://hl7.org/fhir/response-code'): ('MessageHeader',),
    ('confidentiality', 'http://terminology.hl7.org/CodeSystem/v3-Confidentiality'): ('Composition',),
    ('content-mode', 'http://hl7.org/fhir/codesystem-content-mode'): ('CodeSystem',),
    ('criticality', 'http://hl7.org/fhir/allergy-intolerance-criticality'): ('AllergyIntolerance',),
    ('derivation', 'http://hl7.org/fhir/type-derivation-rule'): ('StructureDefinition',),
    ('ext-context', 'http://hl7.org/fhir/extension-context-type'): ('StructureDefinition',),
    ('focus', 'http://hl7.org/fhir/resource-types'): ('MessageDefinition',),
    ('gender', 'http://hl7.org/fhir/administrative-gender'): (
        'Patient', 'Person', 'Practitioner', 'RelatedPerson',
    ),
    ('id-type', 'http://hl7.org/fhir/namingsystem-identifier-type'): ('NamingSystem',),
    ('intent', 'http://hl7.org/fhir/CodeSystem/medicationrequest-intent'): ('MedicationRequest',),
    ('intent', 'http://hl7.org/fhir/request-intent'): (
        'CarePlan', 'DeviceRequest', 'RequestGroup', 'ServiceRequest',
    ),
    ('kind', 'http://hl7.org/fhir/namingsystem-type'): ('NamingSystem',),
    ('kind', 'http://hl7.org/fhir/operation-kind'): ('OperationDefinition',),
    ('kind', 'http://hl7.org/fhir/structure-definition-kind'): ('StructureDefinition',),
    ('lifecycle-status', 'http://hl7.org/fhir/goal-status'): ('Goal',),
    ('mode', 'http://hl7.org/fhir/restful-capability-mode'): ('CapabilityStatement',),
    ('outcome', 'http://hl7.org/fhir/audit-event-outcome'): ('AuditEvent',),
    ('outcome', 'http://hl7.org/fhir/remittance-outcome'): (
        'ClaimResponse', 'CoverageEligibilityResponse', 'PaymentReconciliation',
    ),
    ('part-status', 'http://hl7.org/fhir/participationstatus'): ('Appointment', 'AppointmentResponse'),
    ('priority', 'http://hl7.org/fhir/request-priority'): (
        'CommunicationRequest', 'MedicationRequest', 'RequestGroup', 'ServiceRequest', 'Task',
    ),
    ('relation', 'http://hl7.org/fhir/document-relationship-type'): ('DocumentReference',),
    ('resource', 'http://hl7.org/fhir/resource-types'): ('CapabilityStatement', 'CompartmentDefinition'),
    ('result', 'http://hl7.org/fhir/report-result-codes'): ('TestReport',),
    ('severity', 'http://hl7.org/fhir/reaction-event-severity'): ('AllergyIntolerance',),
    ('start', 'http://hl7.org/fhir/resource-types'): ('GraphDefinition',),
    ('status', 'http://hl7.org/fhir/CodeSystem/medication-statement-status'): ('MedicationStatement',),
    ('status', 'http://hl7.org/fhir/CodeSystem/medication-status'): ('Medication',),
    ('status', 'http://hl7.org/fhir/CodeSystem/medicationrequest-status'): ('MedicationRequest',),
    ('status', 'http://hl7.org/fhir/account-status'): ('Account',),
    ('status', 'http://hl7.org/fhir/appointmentstatus'): ('Appointment',),
    ('status', 'http://hl7.org/fhir/care-team-status'): ('CareTeam',),
    ('status', 'http://hl7.org/fhir/composition-status'): ('Composition',),
    ('status', 'http://hl7.org/fhir/consent-state-codes'): ('Consent',),
    ('status', 'http://hl7.org/fhir/contract-status'): ('Contract',),
    ('status', 'http://hl7.org/fhir/device-status'): ('Device',),
    ('status', 'http://hl7.org/fhir/diagnostic-report-status'): ('DiagnosticReport',),
    ('status', 'http://hl7.org/fhir/document-reference-status'): ('DocumentManifest', 'DocumentReference'),
    ('status', 'http://hl7.org/fhir/encounter-status'): ('Encounter',),
    ('status', 'http://hl7.org/fhir/endpoint-status'): ('Endpoint',),
    ('status', 'http://hl7.org/fhir/episode-of-care-status'): ('EpisodeOfCare',),
    ('status', 'http://hl7.org/fhir/event-status'): (
        'ClinicalImpression', 'Communication', 'Immunization', 'Media', 'Procedure',
    ),
    ('status', 'http://hl7.org/fhir/explanationofbenefit-status'): ('ExplanationOfBenefit',),
    ('status', 'http://hl7.org/fhir/fm-status'): (
        'Claim', 'ClaimResponse', 'Coverage', 'CoverageEligibilityRequest', 'CoverageEligibilityResponse',
        'EnrollmentRequest', 'EnrollmentResponse', 'PaymentNotice', 'PaymentReconciliation',
        'VisionPrescription',
    ),
    ('status', 'http://hl7.org/fhir/history-status'): ('FamilyMemberHistory',),
    ('status', 'http://hl7.org/fhir/imagingstudy-status'): ('ImagingStudy',),
    ('status', 'http://hl7.org/fhir/invoice-status'): ('Invoice',),
    ('status', 'http://hl7.org/fhir/list-status'): ('List',),
    ('status', 'http://hl7.org/fhir/location-status'): ('Location',),
    ('status', 'http://hl7.org/fhir/measure-report-status'): ('MeasureReport',),
    ('status', 'http://hl7.org/fhir/observation-status'): ('Observation',),
    ('status', 'http://hl7.org/fhir/publication-status'): (
        'ActivityDefinition', 'CapabilityStatement', 'ChargeItemDefinition', 'CodeSystem',
        'CompartmentDefinition', 'ConceptMap', 'EffectEvidenceSynthesis', 'EventDefinition', 'Evidence',
        'EvidenceVariable', 'ExampleScenario', 'GraphDefinition', 'ImplementationGuide', 'InsurancePlan',
        'Library', 'Measure', 'MessageDefinition', 'NamingSystem', 'OperationDefinition',
        'PlanDefinition', 'Questionnaire', 'ResearchDefinition', 'ResearchElementDefinition',
        'RiskEvidenceSynthesis', 'SearchParameter', 'StructureDefinition', 'StructureMap',
        'TerminologyCapabilities', 'TestScript', 'ValueSet',
    ),
    ('status', 'http://hl7.org/fhir/questionnaire-answers-status'): ('QuestionnaireResponse',),
    ('status', 'http://hl7.org/fhir/request-status'): (
        'CarePlan', 'CommunicationRequest', 'DeviceRequest', 'NutritionOrder', 'RequestGroup',
        'ServiceRequest',
    ),
    ('status', 'http://hl7.org/fhir/research-study-status'): ('ResearchStudy',),
    ('status', 'http://hl7.org/fhir/research-subject-status'): ('ResearchSubject',),
    ('status', 'http://hl7.org/fhir/slotstatus'): ('Slot',),
    ('status', 'http://hl7.org/fhir/specimen-status'): ('Specimen',),
    ('status', 'http://hl7.org/fhir/subscription-status'): ('Subscription',),
    ('status', 'http://hl7.org/fhir/substance-status'): ('Substance',),
    ('status', 'http://hl7.org/fhir/supplydelivery-status'): ('SupplyDelivery',),
    ('status', 'http://hl7.org/fhir/supplyrequest-status'): ('SupplyRequest',),
    ('status', 'http://hl7.org/fhir/task-status'): ('Task',),
    ('status', 'http://terminology.hl7.org/CodeSystem/medication-admin-status'): (
        'ImmunizationEvaluation', 'MedicationAdministration',
    ),
    ('status', 'http://terminology.hl7.org/CodeSystem/medicationdispense-status'): ('MedicationDispense',),
    ('status', 'http://terminology.hl7.org/CodeSystem/medicationknowledge-status'): ('MedicationKnowledge',),
    ('subject-type', 'http://hl7.org/fhir/resource-types'): ('Questionnaire',),
    ('target', 'http://hl7.org/fhir/resource-types'): ('SearchParameter',),
    ('type', 'http://hl7.org/fhir/allergy-intolerance-type'): ('AllergyIntolerance',),
    ('type', 'http://hl7.org/fhir/bundle-type'): ('Bundle',),
    ('type', 'http://hl7.org/fhir/group-type'): ('Group',),
    ('type', 'http://hl7.org/fhir/search-param-type'): ('SearchParameter',),
    ('type', 'http://hl7.org/fhir/sequence-type'): ('MolecularSequence',),
    ('type', 'http://hl7.org/fhir/subscription-channel-type'): ('Subscription',),
    ('use', 'http://hl7.org/fhir/claim-use'): ('Claim', 'ClaimResponse'),
}


def _each_parameter(sql: str) -> None:
    """`sql` once per (parameter, system), with :param, :system and :types bound."""
    for (param, system), types in IMPLICIT_SYSTEMS.items():
        op.execute(sa.text(sql).bindparams(sa.bindparam("types", expanding=True))
                   .bindparams(param=param, system=system, types=list(types)))


def upgrade() -> None:
    _each_parameter("UPDATE search_token SET system = :system "
                    "WHERE param = :param AND system IS NULL AND resource_type IN :types")


def downgrade() -> None:
    _each_parameter("UPDATE search_token SET system = NULL "
                    "WHERE param = :param AND system = :system AND resource_type IN :types")
