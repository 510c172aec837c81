"""What the API server does with a ProjectVersion, in Python, for tests without a cluster.

``admit`` follows the API server's order for a create or update: apply the
schema's defaults, validate the OpenAPI keywords (unknown fields are errors, as
with kubectl's strict field validation), then evaluate the CEL rules
(x-kubernetes-validations) with cel-python, ``self`` bound to the value at the
rule's level and ``oldSelf`` to the old value for transition rules.
``structural_problems`` checks the schema the way the API server checks a CRD
on registration, plus kiu's own conventions (descriptions, bounded strings).

cel-python implements standard CEL. The rules use only what both it and the
Kubernetes CEL environment provide: has(), size(), string(), matches() (RE2 in
both), startsWith(), comparisons and ||. Kubernetes-only libraries (quantity(),
isURL(), optionals) are not used, so every rule is evaluated here; the schema
test fails if a rule does not compile in cel-python.
"""

from __future__ import annotations

import copy
import functools
import re
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import celpy
import re2
import yaml
from celpy import celtypes

ROOT = Path(__file__).resolve().parents[2]
CRD_PATH = ROOT / "crds" / "projectversion.yaml"

_KEYWORDS = {
    "type",
    "description",
    "properties",
    "required",
    "items",
    "additionalProperties",
    "enum",
    "default",
    "minimum",
    "maximum",
    "exclusiveMinimum",
    "minLength",
    "maxLength",
    "pattern",
    "maxItems",
    "maxProperties",
    "format",
    "anyOf",
    "x-kubernetes-int-or-string",
    "x-kubernetes-validations",
    "x-kubernetes-list-type",
    "x-kubernetes-list-map-keys",
}
_INT_OR_STRING_ANY_OF = [{"type": "integer"}, {"type": "string"}]
_RULE_KEYS = {"rule", "message", "messageExpression", "fieldPath", "reason"}
_REASONS = {"FieldValueInvalid", "FieldValueForbidden", "FieldValueRequired", "FieldValueDuplicate"}
_RFC3339 = re.compile(
    r"[0-9]{4}-[0-9]{2}-[0-9]{2}[Tt][0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]+)?([Zz]|[+-][0-9]{2}:[0-9]{2})"
)
_MISSING = object()
#: Root fields whose values the API server itself checks.
_SERVED = {"apiVersion", "kind"}


class RuleError(AssertionError):
    """A CEL rule failed to compile or evaluate: a bug in the CRD, not a refused object."""


def load_crd() -> dict[str, Any]:
    return yaml.safe_load(CRD_PATH.read_text())


@functools.cache
def root_schema() -> dict[str, Any]:
    (version,) = load_crd()["spec"]["versions"]
    return version["schema"]["openAPIV3Schema"]


def node_at(path: str) -> dict[str, Any]:
    """The schema node at a dotted path such as ``spec.inferenceUnit.tps``; ``[]`` for items."""
    node = root_schema()
    for part in filter(None, re.split(r"\.|(?=\[\])", path)):
        node = node["items"] if part == "[]" else node["properties"][part]
    return node


def walk(node: Mapping[str, Any], path: str = "") -> Iterator[tuple[str, Mapping[str, Any]]]:
    """Every schema node with its path, parents first."""
    yield path, node
    for name, child in node.get("properties", {}).items():
        yield from walk(child, f"{path}.{name}".lstrip("."))
    if "items" in node:
        yield from walk(node["items"], f"{path}[]")
    if isinstance(node.get("additionalProperties"), Mapping):
        yield from walk(node["additionalProperties"], f"{path}.*")


# Structural schema -----------------------------------------------------------------------


def structural_problems(root: Mapping[str, Any]) -> list[str]:
    problems = []
    if root.get("type") != "object":
        problems.append("root: type must be object")
    for path, node in walk(root):
        where = path or "root"
        if path == "metadata":
            problems += _metadata_problems(node)
            continue
        problems += [f"{where}: keyword {key!r} not allowed" for key in set(node) - _KEYWORDS]
        problems += _type_problems(where, node)
        if path and not node.get("description"):
            problems.append(f"{where}: no description")
        if "default" in node:
            defaulted = default(copy.deepcopy(node["default"]), node)
            problems += [f"{where}: default invalid: {e}" for e in validate(defaulted, node)]
        problems += _rule_problems(where, node)
    return problems


def _metadata_problems(node: Mapping[str, Any]) -> list[str]:
    # The API server owns ObjectMeta: only restrictions of name and generateName are allowed.
    problems = []
    if set(node) != {"type", "properties"} or node["type"] != "object":
        problems.append("metadata: only type: object and properties are allowed")
    if not set(node.get("properties", {})) <= {"name", "generateName"}:
        problems.append("metadata: only name and generateName may be restricted")
    return problems


def _type_problems(where: str, node: Mapping[str, Any]) -> list[str]:
    if node.get("x-kubernetes-int-or-string"):
        if "type" in node or node.get("anyOf") != _INT_OR_STRING_ANY_OF:
            return [f"{where}: int-or-string needs anyOf integer/string and no type"]
        return []
    kind = node.get("type")
    problems = []
    if kind not in {"object", "array", "string", "integer", "number", "boolean"}:
        problems.append(f"{where}: type missing or unknown: {kind!r}")
    if "anyOf" in node:
        problems.append(f"{where}: anyOf is only allowed for int-or-string")
    if kind == "object":
        has_properties = "properties" in node
        if has_properties == isinstance(node.get("additionalProperties"), Mapping):
            problems.append(f"{where}: needs exactly one of properties and additionalProperties")
        if "additionalProperties" in node and "maxProperties" not in node:
            problems.append(f"{where}: map without maxProperties")
        missing = set(node.get("required", ())) - set(node.get("properties", {}))
        problems += [f"{where}: required field {name!r} not in properties" for name in missing]
    if kind == "array":
        if "items" not in node or "maxItems" not in node:
            problems.append(f"{where}: array needs items and maxItems")
        list_type = node.get("x-kubernetes-list-type")
        if list_type == "map":
            items = node["items"]
            for key in node.get("x-kubernetes-list-map-keys", ()):
                if (
                    key not in items.get("required", ())
                    and "default" not in items["properties"][key]
                ):
                    problems.append(f"{where}: list map key {key!r} neither required nor defaulted")
        elif list_type == "set" and node["items"].get("type") in {"object", "array"}:
            problems.append(f"{where}: set of non-scalars")
    if (
        kind == "string"
        and not ({"maxLength", "enum", "format"} & set(node))
        and where not in _SERVED
    ):
        # Unbounded strings make CEL cost estimates explode and invite huge objects.
        problems.append(f"{where}: string without maxLength, enum or format")
    for value in node.get("enum", ()):
        if validate(value, {"type": kind}):
            problems.append(f"{where}: enum value {value!r} is not a {kind}")
    return problems


def _rule_problems(where: str, node: Mapping[str, Any]) -> list[str]:
    problems = []
    for rule in node.get("x-kubernetes-validations", ()):
        label = f"{where}: rule {rule.get('rule')!r}"
        if set(rule) - _RULE_KEYS or "rule" not in rule:
            problems.append(f"{label}: unknown keys or no rule")
        message = rule.get("message", "")
        if not message or "\n" in message:
            problems.append(f"{label}: needs a one-line message")
        elif not message.startswith(("spec.", "status.", "metadata.")):
            problems.append(f"{label}: message must name the field")
        if rule.get("reason", "FieldValueInvalid") not in _REASONS:
            problems.append(f"{label}: unknown reason")
        field_path = rule.get("fieldPath")
        if field_path is not None and not _resolves(node, field_path):
            problems.append(f"{label}: fieldPath {field_path!r} names no field")
        if "string(" in rule.get("messageExpression", ""):
            # The API server estimates string(number) as unbounded and refuses the CRD.
            problems.append(f"{label}: messageExpression converts a value with string()")
        for key in ("rule", "messageExpression"):
            if key in rule:
                try:
                    _program(rule[key])
                except celpy.CELParseError as error:
                    problems.append(f"{label}: {key} does not compile: {error}")
    return problems


def _resolves(node: Mapping[str, Any], field_path: str) -> bool:
    for part in field_path.lstrip(".").split("."):
        node = node.get("properties", {}).get(part)
        if node is None:
            return False
    return True


# Defaulting and OpenAPI validation --------------------------------------------------------


def default(value: Any, node: Mapping[str, Any]) -> Any:
    """Fill in defaults top-down, then inside the defaults, as structural defaulting does."""
    if isinstance(value, dict) and node.get("type") == "object":
        properties = node.get("properties", {})
        extra = node.get("additionalProperties")
        result = {}
        for key, item in value.items():
            child = properties.get(key, extra if isinstance(extra, Mapping) else None)
            result[key] = default(item, child) if child is not None else item
        for key, child in properties.items():
            if key not in result and "default" in child:
                result[key] = default(copy.deepcopy(child["default"]), child)
        return result
    if isinstance(value, list) and "items" in node:
        return [default(item, node["items"]) for item in value]
    return value


def validate(value: Any, node: Mapping[str, Any], path: str = "") -> list[str]:
    """Errors of the OpenAPI keywords, ``path: message``, as the API server reports them."""
    where = path or "<root>"
    if node.get("x-kubernetes-int-or-string"):
        if not (isinstance(value, str) or _is_int(value)):
            return [f"{where}: must be an integer or a string"]
    elif not _has_type(value, node.get("type")):
        return [f"{where}: must be of type {node.get('type')}"]
    errors = []
    if "enum" in node and value not in node["enum"]:
        errors.append(f"{where}: unsupported value {value!r}: supported values {node['enum']}")
    if isinstance(value, int | float) and not isinstance(value, bool):
        errors += _bound_errors(value, node, where)
    if isinstance(value, str):
        if len(value) > node.get("maxLength", len(value)):
            errors.append(f"{where}: may not be longer than {node['maxLength']}")
        if len(value) < node.get("minLength", 0):
            errors.append(f"{where}: may not be shorter than {node['minLength']}")
        if "pattern" in node and not re2.search(node["pattern"], value):
            errors.append(f"{where}: should match {node['pattern']!r}")
        if node.get("format") == "date-time" and not _RFC3339.fullmatch(value):
            errors.append(f"{where}: not an RFC 3339 date-time")
    if isinstance(value, list):
        errors += _list_errors(value, node, path)
    if isinstance(value, dict):
        errors += _object_errors(value, node, path)
    return errors


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _has_type(value: Any, kind: str | None) -> bool:
    match kind:
        case "object":
            return isinstance(value, dict)
        case "array":
            return isinstance(value, list)
        case "string":
            return isinstance(value, str)
        case "integer":
            return _is_int(value)
        case "number":
            return isinstance(value, int | float) and not isinstance(value, bool)
        case "boolean":
            return isinstance(value, bool)
    return False


def _bound_errors(value: float, node: Mapping[str, Any], where: str) -> list[str]:
    errors = []
    if "minimum" in node:
        low, exclusive = node["minimum"], node.get("exclusiveMinimum", False)
        if value < low or (exclusive and value == low):
            errors.append(
                f"{where}: should be greater than {'' if exclusive else 'or equal to '}{low}"
            )
    if "maximum" in node and value > node["maximum"]:
        errors.append(f"{where}: should be less than or equal to {node['maximum']}")
    return errors


def _list_errors(value: list[Any], node: Mapping[str, Any], path: str) -> list[str]:
    errors = []
    if len(value) > node.get("maxItems", len(value)):
        errors.append(f"{path}: must have at most {node['maxItems']} items")
    list_type = node.get("x-kubernetes-list-type")
    keys = [
        tuple(item.get(key) for key in node.get("x-kubernetes-list-map-keys", ()))
        if list_type == "map" and isinstance(item, dict)
        else item
        for item in value
    ]
    if list_type in {"set", "map"}:
        errors += [
            f"{path}: duplicate value {key!r}" for i, key in enumerate(keys) if key in keys[:i]
        ]
    for index, item in enumerate(value):
        errors += validate(item, node["items"], f"{path}[{index}]")
    return errors


def _object_errors(value: dict[str, Any], node: Mapping[str, Any], path: str) -> list[str]:
    errors = []
    properties = node.get("properties", {})
    extra = node.get("additionalProperties")
    if len(value) > node.get("maxProperties", len(value)):
        errors.append(f"{path}: must have at most {node['maxProperties']} properties")
    errors += [
        f"{path}.{key}: required".lstrip(".")
        for key in node.get("required", ())
        if key not in value
    ]
    for key, item in value.items():
        child_path = f"{path}.{key}".lstrip(".")
        if key in properties:
            errors += validate(item, properties[key], child_path)
        elif isinstance(extra, Mapping):
            errors += validate(item, extra, child_path)
        elif path != "metadata":  # ObjectMeta's other fields have the API server's own schema
            errors.append(f'{child_path}: unknown field "{child_path}"')
    return errors


# CEL rules ------------------------------------------------------------------------------------

_ENVIRONMENT = celpy.Environment()


@functools.cache
def _program(expression: str) -> celpy.Runner:
    return _ENVIRONMENT.program(_ENVIRONMENT.compile(expression))


def evaluate(expression: str, **variables: celtypes.Value) -> Any:
    """Evaluate one CEL expression; a rule that errors is a broken rule, not a refusal."""
    try:
        return _program(expression).evaluate(variables)
    except celpy.CELEvalError as error:
        raise RuleError(f"{expression!r} failed to evaluate: {error}") from error


def to_cel(value: Any, node: Mapping[str, Any]) -> celtypes.Value:
    """The CEL value the API server binds for ``value``: its type comes from the schema."""
    if node.get("x-kubernetes-int-or-string"):
        return celtypes.StringType(value) if isinstance(value, str) else celtypes.IntType(value)
    match node.get("type"):
        case "integer":
            return celtypes.IntType(value)
        case "number":
            return celtypes.DoubleType(value)
        case "boolean":
            return celtypes.BoolType(value)
        case "string":
            return celtypes.StringType(value)
        case "array":
            return celtypes.ListType([to_cel(item, node["items"]) for item in value])
    properties = node.get("properties", {})
    extra = node.get("additionalProperties")
    return celtypes.MapType(
        {
            celtypes.StringType(key): to_cel(item, properties.get(key, extra))
            for key, item in value.items()
            if key in properties or isinstance(extra, Mapping)
        }
    )


def rule_errors(
    value: Any, node: Mapping[str, Any], *, old: Any = _MISSING, path: str = ""
) -> list[str]:
    """Messages of the rules ``value`` breaks, ``path: message``, for a defaulted, valid value."""
    return [
        f"{where or '<root>'}: {message}" for where, _, message in _failures(value, node, old, path)
    ]


def broken_rules(obj: Mapping[str, Any], *, old: Mapping[str, Any] | None = None) -> set[str]:
    """The rule expressions ``obj`` breaks (after defaulting)."""
    root = root_schema()
    before = _MISSING if old is None else default(copy.deepcopy(dict(old)), root)
    stored = default(copy.deepcopy(dict(obj)), root)
    return {rule["rule"] for _, rule, _ in _failures(stored, root, before, "")}


def _failures(
    value: Any, node: Mapping[str, Any], old: Any, path: str
) -> list[tuple[str, Mapping[str, Any], str]]:
    failures = []
    for rule in node.get("x-kubernetes-validations", ()):
        variables = {"self": to_cel(value, node)}
        if "oldSelf" in rule["rule"]:
            if old is _MISSING:
                continue  # transition rules run on updates only
            variables["oldSelf"] = to_cel(old, node)
        if evaluate(rule["rule"], **variables) != celtypes.BoolType(True):
            message = (
                evaluate(rule["messageExpression"], **variables)
                if "messageExpression" in rule
                else rule["message"]
            )
            failures.append((path, rule, str(message)))
    if isinstance(value, dict):
        properties = node.get("properties", {})
        extra = node.get("additionalProperties")
        for key, item in value.items():
            child = properties.get(key, extra if isinstance(extra, Mapping) else None)
            if child is None:
                continue
            before = old.get(key, _MISSING) if isinstance(old, dict) else _MISSING
            failures += _failures(item, child, before, f"{path}.{key}".lstrip("."))
    if isinstance(value, list):
        # No list here is a map or set with correlatable items, so items have no oldSelf.
        for index, item in enumerate(value):
            failures += _failures(item, node["items"], _MISSING, f"{path}[{index}]")
    return failures


def admit(
    obj: Mapping[str, Any], *, old: Mapping[str, Any] | None = None
) -> tuple[dict[str, Any], list[str]]:
    """The stored object and the errors, empty when the API server would accept ``obj``."""
    root = root_schema()
    stored = default(copy.deepcopy(dict(obj)), root)
    errors = validate(stored, root)
    if not errors:
        before = _MISSING if old is None else default(copy.deepcopy(dict(old)), root)
        errors = rule_errors(stored, root, old=before)
    return stored, errors


def messages(errors: list[str]) -> list[str]:
    """The messages of ``admit``'s errors without their paths."""
    return [error.split(": ", 1)[1] for error in errors]
