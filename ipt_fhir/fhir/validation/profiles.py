"""Profile validation: what a StructureDefinition with derivation=constraint adds to its base.

The base type's rules are validate_resource's job; a profile is checked for what it adds —
cardinality, fixed[x] / pattern[x] values, required bindings, allowed choice types and reference
targets, error-severity invariants, and slicing (value/pattern discriminators, plus extensions sliced
by url). A differential on a core type is enough (it is, by definition, the part that differs); a
profile whose base is another registered profile is checked against that profile as well.
Compiled once per profile on registration.
"""
from __future__ import annotations

import re
from typing import Any, Iterator

from ..outcome import Issue, error, warning
from .definitions import structures
from .invariants import Invariant, InvariantUnevaluable
from .terminology import all_codes, expansion

_profiles: dict[str, "Profile"] = {}
_REF_TYPE = re.compile(r"^(?:.*/)?([A-Z][A-Za-z]+)/[^/]+(?:/_history/.*)?$")
_SUFFIX = {"SimpleQuantity": "Quantity", "MoneyQuantity": "Quantity"}


class Rule:
    """One element of a profile, with its children (by name) and slices (by slice name)."""

    __slots__ = ("id", "name", "choice", "min", "max", "fixed", "pattern", "binding", "types", "targets",
                 "invariants", "children", "slices", "slicing", "ext_url", "touched")

    def __init__(self, ident: str, name: str) -> None:
        self.id = ident
        self.name = name[:-3] if name.endswith("[x]") else name
        self.choice = name.endswith("[x]")
        self.min: int | None = None
        self.max: int | None = None  # -1: unbounded, None: not constrained here
        self.fixed: Any = None
        self.pattern: Any = None
        self.binding: str | None = None
        self.types: list[str] | None = None
        self.targets: frozenset[str] | None = None
        self.invariants: list[Invariant] = []
        self.children: dict[str, Rule] = {}
        self.slices: dict[str, Rule] = {}
        self.slicing: dict | None = None
        self.ext_url: str | None = None  # for extension slices: the extension's canonical URL
        self.touched = False


class Profile:
    def __init__(self, sd: dict) -> None:
        self.url: str = sd["url"]
        self.type: str = sd["type"]
        base = (sd.get("baseDefinition") or "").split("|", 1)[0]
        self.base_profile = base if base and not base.startswith("http://hl7.org/fhir/StructureDefinition/") else None
        core = structures()["types"].get(self.type, {})
        core_keys = {k for el in core.get("elements", []) for k in el.get("c", ())}
        elements = (sd.get("differential") or {}).get("element") or (sd.get("snapshot") or {}).get("element") or []
        self.root = Rule(self.type, self.type)
        for el in elements:
            self._add(el, core_keys)

    def _add(self, el: dict, core_keys: set[str]) -> None:
        ident = el.get("id") or el["path"]
        segments = ident.split(".")
        if segments[0] != self.type:
            segments[0] = self.type
        rule = self.root
        for seg in segments[1:]:
            name, _, slice_name = seg.partition(":")
            child = rule.children.get(name[:-3] if name.endswith("[x]") else name)
            if child is None:
                child = Rule(f"{rule.id}.{name}", name)
                rule.children[child.name] = child
            rule = child
            if slice_name:
                sl = rule.slices.get(slice_name)
                if sl is None:
                    sl = Rule(f"{rule.id}:{slice_name}", name)
                    rule.slices[slice_name] = sl
                rule = sl
        if "min" in el:
            rule.min = el["min"]
        if "max" in el:
            rule.max = -1 if el["max"] == "*" else int(el["max"])
        for key, value in el.items():
            if key.startswith("fixed") and key != "fixed":
                rule.fixed = value
            elif key.startswith("pattern") and key != "pattern":
                rule.pattern = value
        b = el.get("binding")
        if b and b.get("strength") == "required" and b.get("valueSet"):
            rule.binding = b["valueSet"].split("|", 1)[0]
        if el.get("type"):
            rule.types = [t["code"] for t in el["type"]]
            targets = {p.rsplit("/", 1)[-1] for t in el["type"] for p in t.get("targetProfile", [])}
            if targets and "Resource" not in targets:
                rule.targets = frozenset(targets)
            ext_profiles = [p for t in el["type"] if t["code"] == "Extension" for p in t.get("profile", [])]
            if ext_profiles:
                rule.ext_url = ext_profiles[0].split("|", 1)[0]
        if el.get("slicing"):
            rule.slicing = el["slicing"]
        for c in el.get("constraint", []):
            if c.get("severity") == "error" and c.get("expression") and c["key"] not in core_keys and c["key"] != "ele-1":
                base_path = el["path"][:-3] if el["path"].endswith("[x]") else el["path"]
                rule.invariants.append(Invariant(c["key"], c.get("human", ""), c["expression"], base_path))
        rule.touched = True


def register_profile(structure_definition: dict) -> None:
    sd = structure_definition
    if sd.get("resourceType") != "StructureDefinition" or not sd.get("url") or not sd.get("type"):
        raise ValueError("register_profile needs a StructureDefinition with url and type")
    _profiles[sd["url"].split("|", 1)[0]] = Profile(sd)


def known_profiles() -> frozenset[str]:
    return frozenset(_profiles)


def can_check(url: str, resource_type: str) -> bool:
    """Whether a resource of `resource_type` can be validated against profile `url`: one the server
    knows, or the core definition of the type itself."""
    canonical = url.split("|", 1)[0]
    return canonical in _profiles or canonical == f"http://hl7.org/fhir/StructureDefinition/{resource_type}"


def validate_profiles(resource: dict, profiles: list[str] | None = None) -> list[Issue]:
    issues: list[Issue] = []
    if profiles is None:
        meta = resource.get("meta") if isinstance(resource, dict) else None
        claimed = meta.get("profile") if isinstance(meta, dict) else None
        profiles = [p for p in claimed if isinstance(p, str)] if isinstance(claimed, list) else []
    rt = resource.get("resourceType") if isinstance(resource, dict) else None
    for i, url in enumerate(profiles):
        canonical = url.split("|", 1)[0]
        if canonical.startswith("http://hl7.org/fhir/StructureDefinition/") and canonical.rsplit("/", 1)[-1] == rt:
            continue  # the core definition itself: validate_resource's job
        profile = _profiles.get(canonical)
        if profile is None:
            issues.append(warning("not-supported", f"Profile {canonical} is not known to this server; not checked",
                                  f"{rt}.meta.profile[{i}]" if rt else ""))
            continue
        _check_profile(profile, resource, issues, set())
    return issues


def _check_profile(profile: Profile, resource: dict, issues: list[Issue], seen: set[str]) -> None:
    if profile.url in seen:
        return
    seen.add(profile.url)
    if profile.base_profile and profile.base_profile in _profiles:
        _check_profile(_profiles[profile.base_profile], resource, issues, seen)
    rt = resource.get("resourceType")
    if rt != profile.type:
        issues.append(error("business-rule", f"Profile {profile.url} is for {profile.type}, not {rt}", str(rt)))
        return
    _Checker(profile, resource, issues).rule(profile.root, [(resource, rt)])


class _Checker:
    def __init__(self, profile: Profile, resource: dict, issues: list[Issue]) -> None:
        self.p = profile
        self.resource = resource
        self.issues = issues

    def err(self, code: str, msg: str, expr: str) -> None:
        self.issues.append(error(code, f"Profile {self.p.url}: {msg}", expr))

    def rule(self, rule: Rule, instances: list[tuple[Any, str]]) -> None:
        for item, expr in instances:
            self.values(rule, item, expr)
        for child in rule.children.values():
            all_values: list[tuple[Any, str]] = []
            for item, expr in instances:
                if not isinstance(item, dict):
                    continue
                values = list(_children(item, child, expr))
                if child.choice and child.types is not None:
                    self.choice_types(child, item, expr)
                self.cardinality(child, len(values), f"{expr}.{child.name}")
                all_values.extend(values)
                if child.slices:
                    self.slices(child, values, expr)
            self.rule(child, all_values)

    def choice_types(self, rule: Rule, item: dict, expr: str) -> None:
        allowed = {_SUFFIX.get(t, t).lower() for t in rule.types or ()}
        for key in item:
            if key.startswith(rule.name) and key[len(rule.name):][:1].isupper():
                suffix = key[len(rule.name):]
                if suffix.lower() not in allowed:
                    self.err("structure", f"{rule.name}[x] may only be {', '.join(rule.types or ())}, found {key}",
                             f"{expr}.{rule.name}.ofType({_PRIMITIVE_CAPS.get(suffix, suffix)})")

    def cardinality(self, rule: Rule, n: int, expr: str) -> None:
        if rule.min is not None and n < rule.min:
            self.err("required", f"'{rule.id}' requires at least {rule.min}, found {n}", expr)
        if rule.max is not None and rule.max >= 0 and n > rule.max:
            self.err("structure", f"'{rule.id}' allows at most {rule.max}, found {n}", expr)

    def values(self, rule: Rule, value: Any, expr: str) -> None:
        if rule.fixed is not None and not _equal(value, rule.fixed):
            self.err("value", f"value must be exactly {_show(rule.fixed)}", expr)
        if rule.pattern is not None and not _matches(value, rule.pattern):
            self.err("value", f"value must match the pattern {_show(rule.pattern)}", expr)
        if rule.binding is not None:
            self.binding(rule, value, expr)
        if rule.targets is not None and isinstance(value, dict) and isinstance(value.get("reference"), str):
            m = _REF_TYPE.match(value["reference"])
            if m and m.group(1) not in rule.targets:
                self.err("value", f"a reference to {m.group(1)} is not allowed (allowed: {', '.join(sorted(rule.targets))})",
                         f"{expr}.reference")
        for inv in rule.invariants:
            try:
                ok = inv.holds(value, self.resource, self.resource)
            except InvariantUnevaluable as exc:
                self.issues.append(warning("not-supported", f"Constraint {inv.key} could not be evaluated: {exc.reason}", expr))
                continue
            if not ok:
                self.err("invariant", f"constraint failed: {inv.key}: {inv.human}", expr)

    def binding(self, rule: Rule, value: Any, expr: str) -> None:
        url = rule.binding
        if isinstance(value, str):
            codes = all_codes(url)  # type: ignore[arg-type]
            if codes is not None and value not in codes:
                self.err("code-invalid", f"'{value}' is not in the required value set {url}", expr)
            return
        if not isinstance(value, dict):
            return
        exp = expansion(url)  # type: ignore[arg-type]
        if exp is None:
            return
        codings = value.get("coding") if "coding" in value or "text" in value else [value]
        codings = codings if isinstance(codings, list) else []
        if not any(isinstance(c, dict) and c.get("code") in exp.get(c.get("system"), ()) for c in codings):
            self.err("code-invalid", f"no coding is in the required value set {url}", expr)

    def slices(self, rule: Rule, values: list[tuple[Any, str]], parent_expr: str) -> None:
        discriminators = (rule.slicing or {}).get("discriminator") or []
        unsupported = [d.get("type") for d in discriminators if d.get("type") not in ("value", "pattern")]
        if unsupported:  # type/profile/exists discriminators: not implemented; never guess a rejection
            self.issues.append(warning("not-supported", f"Profile {self.p.url}: slicing of '{rule.id}' by "
                                       f"{', '.join(map(str, unsupported))} is not checked", f"{parent_expr}.{rule.name}"))
            return
        matched_any = [False] * len(values)
        for sl in rule.slices.values():
            members = []
            for i, (v, e) in enumerate(values):
                if _in_slice(v, sl, discriminators):
                    members.append((v, e))
                    matched_any[i] = True
            self.cardinality(sl, len(members), f"{parent_expr}.{rule.name}")
            self.rule(sl, members)
        if rule.slicing and rule.slicing.get("rules") == "closed":
            for ok, (v, e) in zip(matched_any, values):
                if not ok:
                    self.err("structure", f"'{rule.id}' is closed: the item matches none of its slices", e)


def _children(item: dict, rule: Rule, expr: str) -> Iterator[tuple[Any, str]]:
    if rule.choice:
        for key in item:
            if key.startswith(rule.name) and key[len(rule.name):][:1].isupper():
                suffix = key[len(rule.name):]
                tname = _PRIMITIVE_CAPS.get(suffix, suffix)
                yield from _spread(item[key], f"{expr}.{rule.name}.ofType({tname})")
        return
    value = item.get(rule.name)
    if value is None and ("_" + rule.name) in item:
        value = item["_" + rule.name]
    if value is None:
        return
    yield from _spread(value, f"{expr}.{rule.name}")


_PRIMITIVE_CAPS = {n[0].upper() + n[1:]: n for n in (
    "boolean integer decimal string uri url canonical code id oid uuid markdown base64Binary instant date dateTime "
    "time positiveInt unsignedInt".split())}


def _spread(value: Any, expr: str) -> Iterator[tuple[Any, str]]:
    if isinstance(value, list):
        for i, v in enumerate(value):
            if v is not None:
                yield v, f"{expr}[{i}]"
    else:
        yield value, expr


def _in_slice(value: Any, sl: Rule, discriminators: list[dict]) -> bool:
    if not discriminators:
        return False
    for d in discriminators:
        path = d.get("path", "$this")
        if sl.ext_url is not None and path == "url":
            if not (isinstance(value, dict) and value.get("url") == sl.ext_url):
                return False
            continue
        expected_rule = sl if path == "$this" else _descend(sl, path)
        if expected_rule is None:
            return False
        expected = expected_rule.fixed if expected_rule.fixed is not None else expected_rule.pattern
        if expected is None:
            return False
        actual = [value] if path == "$this" else _navigate(value, path)
        if not any(_matches(a, expected) for a in actual):
            return False
    return True


def _descend(rule: Rule, path: str) -> Rule | None:
    for step in path.split("."):
        rule = rule.children.get(step[:-3] if step.endswith("[x]") else step)  # type: ignore[assignment]
        if rule is None:
            return None
    return rule


def _navigate(value: Any, path: str) -> list[Any]:
    current = [value]
    for step in path.split("."):
        nxt: list[Any] = []
        for v in current:
            if isinstance(v, dict):
                got = v.get(step)
                if got is None and step.endswith("[x]"):
                    got = next((v[k] for k in v if k.startswith(step[:-3])), None)
                if isinstance(got, list):
                    nxt.extend(got)
                elif got is not None:
                    nxt.append(got)
        current = nxt
    return current


def _equal(a: Any, b: Any) -> bool:
    if isinstance(a, bool) or isinstance(b, bool):
        return a is b
    return a == b


def _matches(value: Any, pattern: Any) -> bool:
    """FHIR pattern[x]: every property in the pattern is present with a matching value."""
    if isinstance(pattern, dict):
        if not isinstance(value, dict):
            return False
        return all(_matches(value.get(k), v) for k, v in pattern.items())
    if isinstance(pattern, list):
        if not isinstance(value, list):
            return False
        return all(any(_matches(v, p) for v in value) for p in pattern)
    return _equal(value, pattern)


def _show(value: Any) -> str:
    text = repr(value)
    return text if len(text) < 120 else text[:117] + "..."
