"""PATCH bodies: JSON Patch (RFC 6902) and FHIRPath Patch (http://hl7.org/fhir/R4/fhirpatch.html).

JSON Patch is applied by the `jsonpatch` library. FHIRPath Patch needs to know *where* a path points,
not just its values, so paths are walked here step by step (names, choice names, [n], first(), last(),
ofType(), extension('url'), where(...)), into the `_name` companions that hold the extensions of primitives;
the criteria inside where() are evaluated with fhirpathpy. A delete also removes what it leaves empty.
"""
from __future__ import annotations

import copy
import re
from dataclasses import dataclass
from typing import Any

import jsonpatch
import jsonpointer

from .outcome import FHIRPATH_IDENTIFIER, FHIRError, bad_request

JSON_PATCH = "application/json-patch+json"


def apply_patch(resource: dict, patch_body: Any, content_type: str) -> dict:
    """`content_type`: JSON Patch, or a FHIR JSON media type (the API layer answered 415 for any other),
    whose body must then be a FHIRPath Patch Parameters resource."""
    if content_type == JSON_PATCH:
        return _apply_json_patch(resource, patch_body)
    if isinstance(patch_body, dict) and patch_body.get("resourceType") == "Parameters":
        return apply_fhirpath_patch(resource, patch_body)
    # a supported media type with the wrong content: the body is at fault, not its type
    found = patch_body.get("resourceType") if isinstance(patch_body, dict) else None
    # Clients written for servers that merge a partial resource (JSON Merge Patch) send one as
    # application/json: say which two forms a patch here takes.
    raise bad_request(f"A PATCH body in {content_type} is a FHIRPath Patch (a Parameters resource), not "
                      f"{found or 'this body'}; a JSON Patch is sent as {JSON_PATCH}. Partial resources (JSON "
                      "Merge Patch) are not supported", found if isinstance(found, str) and found else "Parameters",
                      code="structure")


def _apply_json_patch(resource: dict, patch: Any) -> dict:
    """The operations one at a time, so that a failure names its operation and, as FHIRPath, the element
    its path points at."""
    if not isinstance(patch, list):
        raise bad_request("A JSON Patch document is a JSON array of operations", code="structure")
    doc = copy.deepcopy(resource)
    for i, op in enumerate(patch):
        try:
            doc = jsonpatch.JsonPatch([op]).apply(doc, in_place=True)
        except jsonpatch.InvalidJsonPatch as exc:
            raise bad_request(f"Invalid JSON Patch operation {i}: {_reason(exc)}", _where(resource, op),
                              code="structure")
        except (jsonpatch.JsonPatchConflict, jsonpatch.JsonPatchTestFailed, jsonpointer.JsonPointerException,
                TypeError, KeyError, IndexError, ValueError) as exc:
            raise FHIRError.of(422, "processing", f"JSON Patch operation {i} ({op.get('op')} {op.get('path')}) "
                                                  f"cannot be applied: {_reason(exc)}", _where(resource, op))
    return doc


def _where(resource: dict, op: Any) -> str:
    """The element a failed operation's path points at, as FHIRPath."""
    return _pointer_expression(resource.get("resourceType") or "", op.get("path") if isinstance(op, dict) else None)


def _reason(exc: Exception) -> str:
    """The library's message without the Python reprs it embeds (the whole document, <class 'str'>)."""
    text = f"no member {exc}" if isinstance(exc, KeyError) else str(exc)
    text = re.sub(r" in [\[{].*$", "", text, flags=re.S)
    return re.sub(r"\s*\(<class '[^']+'>\)", "", text)


def _pointer_expression(resource_type: str, pointer: Any) -> str:
    """A JSON Pointer into the resource as FHIRPath: /name/0/family -> Patient.name[0].family."""
    if not isinstance(pointer, str) or not pointer.startswith("/"):
        return resource_type
    out = resource_type
    for token in pointer[1:].split("/"):
        token = token.replace("~1", "/").replace("~0", "~")
        if token.isdigit():
            out += f"[{token}]"
        elif token == "-" or not FHIRPATH_IDENTIFIER.fullmatch(token):
            break
        else:
            out += f".{token}"
    return out


# --- FHIRPath Patch -----------------------------------------------------------------------------

@dataclass
class _Slot:
    """Where a value lives: container[key] or container[key][index]."""

    container: dict
    key: str
    index: int | None
    keys: tuple[str, ...] = ()  # JSON property names from the resource down to this value

    def get(self) -> Any:
        value = self.container[self.key]
        return value if self.index is None else value[self.index]

    def set(self, value: Any) -> None:
        if self.index is None:
            self.container[self.key] = value
        else:
            self.container[self.key][self.index] = value


def apply_fhirpath_patch(resource: dict, parameters: dict) -> dict:
    doc = copy.deepcopy(resource)
    operations = [p for p in parameters.get("parameter", []) if isinstance(p, dict)]
    if not operations:
        raise bad_request("The FHIRPath Patch has no operation", "Parameters.parameter", code="required")
    for i, op in enumerate(operations):
        where = f"Parameters.parameter[{i}]"
        if op.get("name") != "operation":
            raise bad_request(f"Parameter '{op.get('name')}' is not a patch operation", f"{where}.name")
        parts = {p.get("name"): p for p in op.get("part", []) if isinstance(p, dict)}
        _apply_operation(doc, parts, where)
    return doc


def _part_value(part: dict | None) -> Any:
    if part is None:
        return None
    for key, value in part.items():
        if key.startswith("value") and key != "value":
            return value
    if "part" in part:  # complex values are given as parts named after their elements
        obj: dict[str, Any] = {}
        value_key = None
        for sub in part["part"]:
            value = _part_value(sub)
            name = sub.get("name")
            if name == "value":
                value_key = next((k for k in sub if k.startswith("value") and k != "value"), None)
            if name in obj:
                obj[name] = obj[name] if isinstance(obj[name], list) else [obj[name]]
                obj[name].append(value)
            else:
                obj[name] = value
        if "url" in obj and value_key and not isinstance(obj.get("value"), list):
            # An Extension (the datatype with both url and value[x]) whose value part is named after its
            # element, value[x], as fhirpatch.html names parts: its JSON name comes from the value's type.
            obj[value_key] = obj.pop("value")
        return obj
    if "resource" in part:
        return part["resource"]
    return None


def _part_str(parts: dict, name: str, where: str, required: bool = True) -> str | None:
    part = parts.get(name)
    value = _part_value(part)
    if value is None and required:
        raise bad_request(f"The patch operation needs a '{name}' part", f"{where}.part", code="required")
    return value if value is None else str(value)


def _part_int(parts: dict, name: str, where: str) -> int:
    value = _part_value(parts.get(name))
    if not isinstance(value, int) or isinstance(value, bool):
        raise bad_request(f"The patch operation needs an integer '{name}' part", f"{where}.part", code="required")
    return value


def _apply_operation(doc: dict, parts: dict, where: str) -> None:
    op_type = _part_str(parts, "type", where)
    path = _part_str(parts, "path", where)
    assert op_type is not None and path is not None
    try:
        if op_type == "add":
            name = _part_str(parts, "name", where)
            value = _required_value(parts, where)
            target = _single(_resolve(doc, path), path, where)
            holder = target.get()
            if _is_primitive(holder) and name in _PRIMITIVE_CHILDREN:
                holder = _companion(target, create=True)
            if not isinstance(holder, dict):
                raise _unprocessable(f"'{path}' is not an element that can hold '{name}'", where)
            existing = holder.get(name)
            if existing is None:
                holder[name] = [value] if name == "extension" or _repeats(doc, target, name) else value
            elif isinstance(existing, list):
                existing.append(value)
            else:
                raise _unprocessable(f"'{path}.{name}' already has a value; use replace", where)
        elif op_type == "insert":
            value = _required_value(parts, where)
            items, parent, key = _list_at(doc, path, where)
            index = _part_int(parts, "index", where)
            if index < 0 or index > len(items):
                raise _unprocessable(f"Index {index} is outside '{path}' (size {len(items)})", where)
            items.insert(index, value)
            parent[key] = items
        elif op_type == "delete":
            slots = _resolve(doc, path)
            if len(slots) > 1:
                raise _unprocessable(f"'{path}' matches {len(slots)} elements; delete takes one", where)
            if slots:
                _remove(slots[0])
                _prune(doc)
        elif op_type == "replace":
            value = _required_value(parts, where)
            _single(_resolve(doc, path), path, where).set(value)
        elif op_type == "move":
            items, parent, key = _list_at(doc, path, where)
            source, destination = _part_int(parts, "source", where), _part_int(parts, "destination", where)
            if not (0 <= source < len(items)) or not (0 <= destination < len(items)):
                raise _unprocessable(f"Move {source}->{destination} is outside '{path}' (size {len(items)})", where)
            items.insert(destination, items.pop(source))
        else:
            raise bad_request(f"Unknown patch operation type '{op_type}'", f"{where}.part", code="value")
    except _PathError as exc:
        raise bad_request(f"Patch path '{path}' cannot be used: {exc}", f"{where}.part", code="invalid")


def _required_value(parts: dict, where: str) -> Any:
    value = _part_value(parts.get("value"))
    if value is None:
        raise bad_request("The patch operation needs a 'value' part", f"{where}.part", code="required")
    return value


def _unprocessable(message: str, where: str) -> FHIRError:
    return FHIRError.of(422, "processing", message, where)


def _single(slots: list[_Slot], path: str, where: str) -> _Slot:
    if len(slots) != 1:
        raise _unprocessable(f"'{path}' matches {len(slots)} elements; the operation needs exactly one", where)
    return slots[0]


def _list_at(doc: dict, path: str, where: str) -> tuple[list, dict, str]:
    parent_path, _, key = path.rpartition(".")
    if not parent_path or not re.fullmatch(r"[A-Za-z][A-Za-z0-9_]*", key):
        raise _PathError("insert and move take a path ending in an element name")
    parent = _single(_resolve(doc, parent_path), parent_path, where).get()
    if not isinstance(parent, dict):
        raise _unprocessable(f"'{parent_path}' is not an element", where)
    items = parent.get(key, [])
    if not isinstance(items, list):
        raise _unprocessable(f"'{path}' is not a list", where)
    return items, parent, key


def _repeats(doc: dict, target: _Slot, name: str) -> bool:
    """Whether element `name` under `target` is a list in FHIR JSON (max > 1), from the compiled R4
    definitions; an element the definitions do not know is taken as single."""
    from .validation.compiler import RESOURCE, type_node

    try:
        node = type_node(doc["resourceType"])
        value: Any = doc
        for key in target.keys:
            prop = node.props.get(key)
            if prop is None:
                return False
            value = value[key]
            if prop.kind == RESOURCE:
                inner = value[0] if isinstance(value, list) else value
                node = type_node(inner["resourceType"])
            elif prop.node is not None:
                node = prop.node
            else:
                return False
            if isinstance(value, list):
                value = value[0] if value else {}
        prop = node.props.get(name)
        return bool(prop and prop.elem.array)
    except (KeyError, TypeError, IndexError):
        return False


def _remove(slot: _Slot) -> None:
    if slot.index is None:
        del slot.container[slot.key]
        slot.container.pop("_" + slot.key, None)
    else:
        items = slot.container[slot.key]
        del items[slot.index]
        companions = slot.container.get("_" + slot.key)  # a primitive array's ids and extensions, aligned
        if isinstance(companions, list) and slot.index < len(companions):
            del companions[slot.index]
        if not items:
            del slot.container[slot.key]


# json.html#primitive: a primitive's id and extensions live beside it, in `_name` (an object, or for a
# primitive array an array aligned with it, null where an item has none).
_PRIMITIVE_CHILDREN = ("extension", "id")


def _is_primitive(value: Any) -> bool:
    return value is not None and not isinstance(value, (dict, list))


def _companion(slot: _Slot, create: bool = False) -> dict | None:
    """The object holding the id and extensions of the primitive at `slot` (None when it has none and
    `create` is false)."""
    key = "_" + slot.key
    if slot.index is None:
        found = slot.container.get(key)
        if found is None and create:
            found = slot.container[key] = {}
        return found if isinstance(found, dict) else None
    items = slot.container.get(key)
    if items is None:
        if not create:
            return None
        items = slot.container[key] = [None] * len(slot.container[slot.key])
    if not isinstance(items, list) or slot.index >= len(items):
        return None
    if items[slot.index] is None and create:
        items[slot.index] = {}
    return items[slot.index] if isinstance(items[slot.index], dict) else None


def _prune(value: Any) -> None:
    """Drop what a delete left empty: FHIR JSON has no empty objects or arrays (json.html), so a delete of
    an element's last child removes the element too, as other servers do. Primitive arrays stay aligned
    with their `_name` companions."""
    if isinstance(value, list):
        for item in value:
            _prune(item)
        value[:] = [item for item in value if item != {} and item != []]
        return
    if not isinstance(value, dict):
        return
    for key in list(value):
        child = value[key]
        if key.startswith("_") and isinstance(child, list):
            for item in child:
                _prune(item)
            child = value[key] = [None if item == {} else item for item in child]
            if all(item is None for item in child):
                del value[key]
                if isinstance(value.get(key[1:]), list):  # items that were only their extensions go with them
                    value[key[1:]] = [item for item in value[key[1:]] if item is not None]
            continue
        _prune(child)
        if child == {} or child == []:
            del value[key]
    for key in [k for k in value if not k.startswith("_") and value[k] == []]:
        del value[key]


class _PathError(Exception):
    pass


_STEP = re.compile(
    r"""\s*(?:
        (?P<name>[A-Za-z_][A-Za-z0-9_]*|`[^`]+`)(?P<call>\((?P<args>(?:[^()'"]|'(?:[^'\\]|\\.)*'|\((?:[^()']|'[^']*')*\))*)\))?
    )(?P<index>\[\s*\d+\s*\])?\s*""",
    re.VERBOSE,
)


def _steps(path: str) -> list[tuple[str, str | None, int | None]]:
    steps, pos = [], 0
    while pos < len(path):
        m = _STEP.match(path, pos)
        if not m or m.end() == pos:
            raise _PathError(f"unsupported syntax at position {pos}")
        index = int(m.group("index").strip("[] ")) if m.group("index") else None
        steps.append((m.group("name").strip("`"), m.group("args") if m.group("call") else None, index))
        pos = m.end()
        if pos < len(path):
            if path[pos] != ".":
                raise _PathError(f"unsupported syntax at position {pos}")
            pos += 1
    return steps


def _resolve(doc: dict, path: str) -> list[_Slot]:
    steps = _steps(path)
    if not steps:
        raise _PathError("empty path")
    current = [_Slot({"$": doc}, "$", None)]
    name, args, index = steps[0]
    if args is None and name == doc.get("resourceType"):
        steps = steps[1:]  # the path starts at the resource itself
        if index is not None:
            current = current[index:index + 1]
    for name, args, index in steps:
        if args is None:
            current = _children(current, name)
        else:
            current = _call(current, name, args)
        if index is not None:
            current = current[index:index + 1]
    return current


def _children(slots: list[_Slot], name: str) -> list[_Slot]:
    out: list[_Slot] = []
    for slot in slots:
        value = slot.get()
        if _is_primitive(value) and name in _PRIMITIVE_CHILDREN:
            value = _companion(slot)
        if not isinstance(value, dict):
            continue
        keys = [name] if name in value else [k for k in value if _is_choice_of(k, name)]
        for key in keys:
            child = value[key]
            if isinstance(child, list):
                out.extend(_Slot(value, key, i, slot.keys + (key,)) for i in range(len(child)))
            else:
                out.append(_Slot(value, key, None, slot.keys + (key,)))
    return out


def _is_choice_of(key: str, name: str) -> bool:
    return key.startswith(name) and len(key) > len(name) and key[len(name)].isupper()


def _call(slots: list[_Slot], name: str, args: str) -> list[_Slot]:
    if name == "first":
        return slots[:1]
    if name == "last":
        return slots[-1:]
    if name == "ofType":
        wanted = args.strip().split(".")[-1]
        suffix = wanted[:1].upper() + wanted[1:]
        return [s for s in slots if s.key.endswith(suffix)]
    if name == "extension":
        url = args.strip().strip("'")
        return [s for s in _children(slots, "extension") if isinstance(s.get(), dict) and s.get().get("url") == url]
    if name == "where":
        return [s for s in slots if _truthy(s.get(), args)]
    raise _PathError(f"function {name}() is not supported in patch paths")


def _truthy(value: Any, expression: str) -> bool:
    import fhirpathpy

    try:
        result = fhirpathpy.evaluate(value, expression, {})
    except Exception as exc:  # fhirpathpy raises plain Exceptions for bad expressions
        raise _PathError(f"cannot evaluate where({expression}): {exc}") from None
    return result == [True]
