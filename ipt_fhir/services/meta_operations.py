"""$meta, $meta-add and $meta-delete (R4 resource-operations.html): the profiles, tags and security labels
of a resource version, of a type or of the whole server, and changing a version's in place.

$meta-add and $meta-delete are special: they change a version without making a new one (the operations'
comment: the content of meta does not affect the meaning of the resource, and security labels in
particular are used to apply access rules to existing versions). The version keeps its versionId and
lastUpdated, and a historical version can be changed too. The result is validated as an update would be,
so a profile claimed by $meta-add must hold (an IPT profile included). On the current version the search
index (`_tag`, `_security`, `_profile`) and the IPT layer's hooks follow the change, in one unit of work;
a historical version changes in the history only.
"""
from __future__ import annotations

from sqlalchemy.engine import Connection

from ipt_fhir.fhir.jsonio import dump_json, load_stored
from ipt_fhir.fhir.outcome import FHIRError, bad_request, read_only
from ipt_fhir.fhir.parameters import primitive_parameters
from ipt_fhir.fhir.resource_types import REST_TYPES, require_rest_type
from ipt_fhir.fhir.validation import validate_resource
from ipt_fhir.security import audit, context, guard
from ipt_fhir.security.labels import SENSITIVE_LABELS
from ipt_fhir.services import write_hooks
from ipt_fhir.services.ipt import conformance
from ipt_fhir.services.resources import ResourceService, gone_version, stored_version
from ipt_fhir.services.validation import validate_for_write
from ipt_fhir.store import resources as repo
from ipt_fhir.store.database import Database
from ipt_fhir.store.meta_in_use import meta_in_use
from ipt_fhir.store.resources import StoredVersion
from ipt_fhir.store.search_index import replace_index

_CODED = ("tag", "security")  # Coding lists, a coding's identity being its system and code


# FHIR JSON has no empty objects (json.html), and `return` is 1..1: when nothing is in use, the Meta says so.
_NOTHING_IN_USE = {"extension": [{"url": "http://hl7.org/fhir/StructureDefinition/data-absent-reason",
                                  "valueCode": "not-applicable"}]}


def meta_parameters(meta: dict) -> dict:
    """The operations' output: Parameters with `return` (Meta)."""
    return {"resourceType": "Parameters", "parameter": [{"name": "return", "valueMeta": meta or _NOTHING_IN_USE}]}


def no_parameters(body: object) -> None:
    """$meta takes no parameters: a POST body, if any, is a Parameters without any."""
    if body is not None:
        for name, _value in primitive_parameters(body):
            raise bad_request(f"$meta takes no parameters, got '{name}'", "Parameters.parameter", code="not-supported")


def meta_input(body: object) -> dict:
    """The `meta` (Meta, 1..1) of a $meta-add or $meta-delete Parameters body; anything else is a 400."""
    if not isinstance(body, dict) or body.get("resourceType") != "Parameters":
        raise bad_request("The body of $meta-add and $meta-delete is a Parameters resource with a 'meta'",
                          "Parameters", code="structure")
    errors = [i for i in validate_resource(body, expected_type="Parameters") if i.is_error]
    if errors:
        raise FHIRError(400, errors)
    metas = []
    for index, parameter in enumerate(body.get("parameter") or []):
        if parameter.get("name") != "meta":
            raise bad_request(f"Unknown parameter '{parameter.get('name')}': these operations take one 'meta'",
                              f"Parameters.parameter[{index}].name", code="not-supported")
        if "valueMeta" not in parameter:
            raise bad_request("Parameter 'meta' must be a valueMeta", f"Parameters.parameter[{index}]",
                              code="structure")
        metas.append(parameter["valueMeta"])
    if len(metas) != 1:
        raise bad_request(f"These operations take exactly one 'meta' parameter, got {len(metas)}",
                          "Parameters.parameter", code="required")
    return metas[0]


def added(meta: dict, given: dict) -> dict:
    """`meta` with the profiles, tags and security labels of `given` it does not have yet (a tag or label
    is the same when system and code are; version and display do not count)."""
    out = dict(meta)
    profiles = _profiles(out)
    present = {url for url, _ in profiles}
    for url in given.get("profile") or []:
        if url not in present:
            profiles.append((url, None))
            present.add(url)
    _set_profiles(out, profiles)
    for element in _CODED:
        codings = list(out.get(element) or [])
        present = {_identity(c) for c in codings}
        for coding in given.get(element) or []:
            if _identity(coding) not in present:
                codings.append(coding)
                present.add(_identity(coding))
        _set_list(out, element, codings)
    return out


def deleted(meta: dict, given: dict) -> dict:
    """`meta` without the profiles, tags and security labels of `given` (matched as in `added`)."""
    out = dict(meta)
    gone = set(given.get("profile") or [])
    _set_profiles(out, [(url, ext) for url, ext in _profiles(out) if url not in gone])
    for element in _CODED:
        drop = {_identity(c) for c in given.get(element) or []}
        _set_list(out, element, [c for c in out.get(element) or [] if _identity(c) not in drop])
    return out


def _profiles(meta: dict) -> list[tuple[str, object]]:
    """(url, its `_profile` entry or None) per profile: the extensions belong to the profile at their index
    (json.html#primitive), and go where it goes."""
    extensions = meta.get("_profile") if isinstance(meta.get("_profile"), list) else []
    return [(url, extensions[i] if i < len(extensions) else None) for i, url in enumerate(meta.get("profile") or [])]


def _set_profiles(meta: dict, profiles: list[tuple[str, object]]) -> None:
    _set_list(meta, "profile", [url for url, _ in profiles])
    extensions = [ext for _, ext in profiles]
    _set_list(meta, "_profile", extensions if any(e is not None for e in extensions) else None)


def _identity(coding: dict) -> tuple:
    return coding.get("system"), coding.get("code")


def _set_list(meta: dict, key: str, values: list | None) -> None:
    if values:  # FHIR JSON has no empty arrays
        meta[key] = values
    else:
        meta.pop(key, None)


class MetaOperations:
    def __init__(self, db: Database) -> None:
        self.db = db

    def instance(self, resource_type: str, resource_id: str, version_id: str | None = None) -> dict:
        """$meta on a resource or one of its versions: its meta (a read: 404, 410 and access as read)."""
        require_rest_type(resource_type)
        with self.db.read() as conn:
            stored = ResourceService.read_in(conn, resource_type, resource_id, version_id)
        return load_stored(stored.content).get("meta") or {}

    def in_use(self, resource_type: str | None) -> dict:
        """$meta on a type, or with None on the server: the profiles, tags and security labels its resources
        carry. Under patient/ scopes this would tell about other patients' resources: it needs search
        scopes that are not confined to a compartment; without the sensitive scope, resources labelled
        sensitive do not count, as in a search."""
        if resource_type is not None:
            require_rest_type(resource_type)
        types = [resource_type] if resource_type else None
        hidden: tuple[tuple[str, str], ...] = ()
        if not context.current().unrestricted:
            types, hide_sensitive = self._unconfined_types(types)
            hidden = tuple(SENSITIVE_LABELS) if hide_sensitive else ()
        with self.db.read() as conn:
            profiles, tags, labels = meta_in_use(conn, types, hidden)
        meta: dict = {}
        _set_list(meta, "profile", profiles)
        _set_list(meta, "tag", [_coding(s, c) for s, c in tags])
        _set_list(meta, "security", [_coding(s, c) for s, c in labels])
        return meta

    @staticmethod
    def _unconfined_types(types: list[str] | None) -> tuple[list[str], bool]:
        """The types the token may search, and whether sensitive-labelled resources must not count (as a
        search excludes them)."""
        allowed, confined, hide_sensitive = guard.search_confinement(types or sorted(REST_TYPES))
        if confined:
            raise guard.forbidden("$meta on a type or the server reads every resource's labels: patient/ "
                                  "scopes cannot grant it")
        return allowed, hide_sensitive

    def add(self, resource_type: str, resource_id: str, body: object, version_id: str | None = None) -> dict:
        return self._change(resource_type, resource_id, version_id, meta_input(body), added)

    def delete(self, resource_type: str, resource_id: str, body: object, version_id: str | None = None) -> dict:
        return self._change(resource_type, resource_id, version_id, meta_input(body), deleted)

    def _change(self, resource_type: str, resource_id: str, version_id: str | None, given: dict, change) -> dict:  # noqa: ANN001
        require_rest_type(resource_type)
        if conformance.is_published(resource_type, resource_id):
            raise read_only(f"{resource_type}/{resource_id} is published by this server and is read-only",
                            resource_type)
        guard.require("update", resource_type)  # before the lookup: no answer tells a caller what exists
        with self.db.write() as conn:
            current = repo.current(conn, resource_type, resource_id, for_update=True)  # PostgreSQL: locked
            target = current if version_id is None and current is not None else \
                stored_version(conn, resource_type, resource_id, version_id)  # 404 as read and vread
            if target.deleted:
                raise gone_version(target)
            previous = load_stored(target.content)
            meta = change(previous.get("meta") or {}, given)
            guard.check_resource("update", resource_type, previous)
            if meta == previous.get("meta"):
                return meta
            doc = {**previous, "meta": meta}
            guard.check_resource("update", resource_type, doc)
            is_current = current is not None and target.version_id == current.version_id
            self._store(conn, target, doc, previous, is_current)
        return meta

    @staticmethod
    def _store(conn: Connection, target: StoredVersion, doc: dict, previous: dict, is_current: bool) -> None:
        """Validate `doc` as an update would be, then write it over `target`. Not ResourceService's own
        write steps: its rule checks are deferred inside a transaction, whose deferred checks have run by
        the time its operation entries (these) run, and its indexing takes a version 1 for a new resource
        whose rows are still to come."""
        resource_type, resource_id = target.resource_type, target.id
        validate_for_write(doc, resource_type)
        change = write_hooks.Change(resource_type, resource_id, "PATCH", doc, previous)
        if is_current:
            issues = [i for hook in write_hooks.registered() for i in hook.check(conn, change)]
            if any(i.is_error for i in issues):
                raise FHIRError(422, issues)
        rewritten = StoredVersion(resource_type, resource_id, target.version_id, target.last_updated, False,
                                  dump_json(doc))
        repo.rewrite_version(conn, rewritten, is_current)
        if is_current:
            replace_index(conn, resource_type, resource_id, doc)
            for hook in write_hooks.registered():
                hook.after_write(conn, change)
        audit.record_write(conn, "operation", resource_type, resource_id, target.version_id, doc, previous)


def _coding(system: str | None, code: str | None) -> dict:
    return {key: value for key, value in (("system", system), ("code", code)) if value is not None}
