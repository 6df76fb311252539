"""IPT routes: PlanDefinition/[id]/$apply, CarePlan/[id]/$ipt-progress, and the server's own
conformance resources (read, vread, history, search merged with stored ones; writes refused)."""
from __future__ import annotations

from urllib.parse import parse_qsl, urlencode, urlsplit

from fastapi import APIRouter, Request
from fastapi.responses import Response
from starlette.concurrency import run_in_threadpool
from starlette.convertors import Convertor, register_url_convertor

from ipt_fhir.domain.apply import parse_apply_parameters
from ipt_fhir.fhir.jsonio import load_stored
from ipt_fhir.fhir.outcome import bad_request, not_found, read_only
from ipt_fhir.security import audit
from ipt_fhir.services import search as search_service
from ipt_fhir.services.bundles import splice_bundle
from ipt_fhir.services.history import history_entry
from ipt_fhir.services.ipt import conformance as conf
from ipt_fhir.services.resources import ResourceService
from ipt_fhir.services.search import subset_read
from ipt_fhir.store.resources import HistoryEntry, StoredVersion

from .body import read_json_body
from .deps import DatabaseDep
from .errors import refuses_writes
from .responses import fhir_base_url, fhir_response, prefer_return, prefers_strict_handling
from .rest_routes import read_response
from .search_routes import audit_url, operation_params, search_params


class _Pattern(Convertor):
    def __init__(self, regex: str) -> None:
        self.regex = regex

    def convert(self, value: str) -> str:
        return value

    def to_string(self, value: str) -> str:
        return value


register_url_convertor("iptconftype", _Pattern(conf.TYPE_PATTERN))
register_url_convertor("iptconfid", _Pattern(conf.RESERVED_ID_PATTERN))

router = APIRouter(prefix="/fhir")


# --- operations ----------------------------------------------------------------------------------

@router.api_route("/PlanDefinition/{plan_id}/$apply", methods=["GET", "POST"], tags=["IPT"],
                  summary="Apply an IPT protocol: CarePlan, course ServiceRequest and planned sessions")
async def apply(plan_id: str, request: Request) -> Response:
    """Parameters: subject (Patient reference), practitioner, start (date), sessionCount, weekday,
    store (true: also store the resources in one transaction; POST only). Answers with the transaction
    Bundle, or with store=true the transaction-response Bundle."""
    if request.method == "POST":
        body, _ = await read_json_body(request)
        parsed = parse_apply_parameters(body)
    else:
        parsed = parse_apply_parameters([(k, v) for k, v in request.query_params.multi_items()
                                         if k not in ("_format", "_pretty")])
        if parsed.store:
            raise bad_request("store=true changes the server: use POST", "store", code="value")
    service = request.app.state.ipt_service
    bundle = await run_in_threadpool(service.apply, plan_id, parsed)
    if not parsed.store:
        return fhir_response(request, bundle)
    from .bundle_routes import bundle_service

    result = await run_in_threadpool(bundle_service(request).process, bundle, base_url=fhir_base_url(request),
                                     prefer=prefer_return(request), strict_search=prefers_strict_handling(request))
    return fhir_response(request, result, 200)


@router.api_route("/CarePlan/{careplan_id}/$ipt-progress", methods=["GET", "POST"], tags=["IPT"],
                  summary="Progress of an IPT care plan")
async def ipt_progress(careplan_id: str, request: Request) -> Response:
    """GET and POST both (OperationDefinition ipt-progress: affectsState false). It defines no input
    parameters; a POST body must still be a Parameters resource, as for any operation."""
    await operation_params(request)
    progress = await run_in_threadpool(request.app.state.ipt_service.progress, careplan_id)
    return fhir_response(request, progress)


# --- the server's conformance resources (read-only, from memory) -------------------------------

def _registry(request: Request) -> conf.ConformanceRegistry:
    return request.app.state.ipt_conformance


def _published(request: Request, resource_type: str, resource_id: str) -> StoredVersion | None:
    return _registry(request).version(resource_type, resource_id)


@router.api_route("/{resource_type:iptconftype}/{resource_id:iptconfid}", methods=["GET", "HEAD"],
                  tags=["IPT"], summary="Read an IPT conformance resource")
def read_conformance(resource_type: str, resource_id: str, request: Request) -> Response:
    published = _published(request, resource_type, resource_id)
    return read_response(request, ResourceService.read_in(None, resource_type, resource_id, published=published))


@router.api_route("/{resource_type:iptconftype}/{resource_id:iptconfid}/_history/{version_id}",
                  methods=["GET", "HEAD"], tags=["IPT"], include_in_schema=False)
def vread_conformance(resource_type: str, resource_id: str, version_id: str, request: Request) -> Response:
    published = _published(request, resource_type, resource_id)
    return read_response(request, ResourceService.read_in(None, resource_type, resource_id, version_id,
                                                          published=published))


@router.api_route("/{resource_type:iptconftype}/{resource_id:iptconfid}/_history", methods=["GET", "HEAD"], tags=["IPT"],
                  include_in_schema=False)
def history_conformance(resource_type: str, resource_id: str, request: Request) -> Response:
    """Its one version, as a stored resource's instance history shows the create that made it."""
    served = _published(request, resource_type, resource_id)
    if served is None:
        raise not_found(f"{resource_type}/{resource_id} is not known")
    base = fhir_base_url(request)
    entry = history_entry(HistoryEntry(0, resource_type, resource_id, served.version_id, served.last_updated,
                                       "POST", served.content, True), base)
    return fhir_response(request, splice_bundle({
        "resourceType": "Bundle", "type": "history", "total": 1,
        "link": [{"relation": "self", "url": f"{base}/{resource_type}/{resource_id}/_history"}]}, [entry]))


@router.api_route("/{resource_type:iptconftype}/{resource_id:iptconfid}", methods=["PUT", "PATCH", "DELETE"],
                  tags=["IPT"], include_in_schema=False)
@refuses_writes
def write_conformance(resource_type: str, resource_id: str, request: Request) -> Response:
    raise read_only(f"{resource_type}/{resource_id} is published by this server and is read-only", resource_type)


# A search of the four conformance types pages over the server's own matches first (in id order), then
# over the stored matches, which fill the rest of the page the server's last ones are on. The server's
# pages are addressed by `_page=ipt.<offset>`; the stored pages after that keep the store's own tokens
# (base64url, which never contains "."), so every link of either part leads back into this route.
_OWN_PAGE = "ipt."


@router.api_route("/{resource_type:iptconftype}", methods=["GET", "HEAD"], tags=["IPT"],
                  summary="Search conformance resources (the server's IPT ones and stored ones)")
@router.api_route("/{resource_type:iptconftype}/_search", methods=["POST"], include_in_schema=False)
async def search_conformance(resource_type: str, request: Request, db: DatabaseDep) -> Response:
    base = fhir_base_url(request)
    params = await search_params(request)
    stored_params = [(n, v) for n, v in params if not (n == "_page" and v.startswith(_OWN_PAGE))]

    def stored_search(search: list[tuple[str, str]]) -> dict:
        return load_stored(search_service.search(db, resource_type, search, base_url=base,
                                                 request_url=audit_url(request, base, params),
                                                 strict=prefers_strict_handling(request)))

    bundle = await run_in_threadpool(stored_search, stored_params)
    ours = _registry(request).search(resource_type, params)
    if not ours:  # none match, or a parameter they cannot be matched on: the stored search alone
        return fhir_response(request, bundle)
    if "total" in bundle:
        bundle["total"] += len(ours)
    size = search_service.page_size(params)
    if size == 0 or ("_summary", "count") in params:  # the total is all the answer holds
        return fhir_response(request, bundle)
    offset = _own_offset(params)
    if offset is None and _has_page(stored_params):
        if "previous" in _links(bundle):
            return fhir_response(request, bundle)
        # Paging back reached the first stored matches: they are on the page after the server's last
        # full one (the last page of the server's matches, unless those fill it exactly).
        offset = len(ours) // size * size
    offset = offset or 0
    page = _own_page(request, bundle, ours, offset, size, resource_type, params)
    room = size - len(ours[offset:][:size])
    if room == 0 and offset + size == len(ours) and _matches(bundle):
        # the server's matches end exactly on this page: the stored ones start on the next
        page["link"].append({"relation": "next", "url": _own_page_url(_links(page)["first"], len(ours))})
    if room > 0 and _matches(bundle):
        mark = audit.reads_noted()
        filler = await run_in_threadpool(stored_search, _with_count(stored_params, room))
        audit.fold_reads_since(mark)  # one search, one AuditEvent
        _fill(page, filler)
    own_ids = [r["id"] for r in ours[offset:offset + size]]
    if own_ids:
        # what the server's own matches include (none without _include/_revinclude, which
        # included_entries reads), unless the page lists it already (a stored match)
        mark = audit.reads_noted()
        included = await run_in_threadpool(lambda: search_service.included_entries(
            db, resource_type, params, own_ids, base_url=base))
        audit.fold_reads_since(mark)
        listed = {e["fullUrl"] for e in page["entry"]}
        page["entry"] += [e for e in included if e["fullUrl"] not in listed]
    if not page["entry"]:
        del page["entry"]  # an empty array is not valid FHIR JSON
    return fhir_response(request, page)


def _own_offset(params: list[tuple[str, str]]) -> int | None:
    tokens = [v for n, v in params if n == "_page" and v.startswith(_OWN_PAGE)]
    if not tokens:
        return None
    offset = tokens[-1][len(_OWN_PAGE):]
    if not offset.isdigit():
        raise bad_request("Invalid _page token", "_page")
    return int(offset)


def _has_page(params: list[tuple[str, str]]) -> bool:
    return any(n == "_page" for n, _ in params)


def _with_count(params: list[tuple[str, str]], count: int) -> list[tuple[str, str]]:
    return [(n, v) for n, v in params if n != "_count"] + [("_count", str(count))]


def _with_page(first_url: str, token: str) -> str:
    return first_url + ("&" if "?" in first_url else "?") + urlencode({"_page": token})


def _own_page_url(first_url: str, offset: int) -> str:
    """The server's page from `offset`; the one from 0 is the search's first page, whose URL has no _page."""
    return _with_page(first_url, _OWN_PAGE + str(offset)) if offset else first_url


def _links(bundle: dict) -> dict[str, str]:
    return {link["relation"]: link["url"] for link in bundle.get("link") or []}


def _own_page(request: Request, stored_first: dict, ours: list[dict], offset: int, size: int, resource_type: str,
              params: list[tuple[str, str]]) -> dict:
    """The page of the server's own matches from `offset`, with the stored search's first page as the
    template: its total, its outcome entries (ignored parameters) and its parameters as used (first link)."""
    first = _links(stored_first)["first"]
    links = {"self": _own_page_url(first, offset), "first": first}
    if offset > 0:
        links["previous"] = _own_page_url(first, max(offset - size, 0))
    if offset + size < len(ours):
        links["next"] = _own_page_url(first, offset + size)
    base = fhir_base_url(request)
    entries = [entry for entry in stored_first.get("entry") or [] if _mode(entry) == "outcome"]
    subsetting = any(n in ("_elements", "_summary") for n, _ in params)
    for resource in ours[offset:offset + size]:
        if subsetting:
            content = _registry(request).content(resource_type, resource["id"])
            resource = load_stored(subset_read(content, resource_type, params))
        entries.append({"fullUrl": f"{base}/{resource_type}/{resource['id']}", "resource": resource,
                        "search": {"mode": "match"}})
    page = {k: v for k, v in stored_first.items() if k not in ("link", "entry")}
    page["link"] = [{"relation": r, "url": u} for r, u in links.items()]
    page["entry"] = entries
    return page


def _fill(page: dict, stored: dict) -> None:
    """The first stored matches (and what they include) after the server's last ones; the next link
    resumes the stored search after them, at the page size the client asked for."""
    page["entry"] += [e for e in stored.get("entry") or [] if _mode(e) != "outcome"]
    stored_next = _links(stored).get("next")
    if stored_next:
        token = [v for n, v in parse_qsl(urlsplit(stored_next).query) if n == "_page"][-1]
        page["link"].append({"relation": "next", "url": _with_page(_links(page)["first"], token)})


def _mode(entry: dict) -> str | None:
    return (entry.get("search") or {}).get("mode")


def _matches(bundle: dict) -> bool:
    return any(_mode(e) == "match" for e in bundle.get("entry") or [])
