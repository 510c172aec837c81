"""Write docs/crd.md, the ProjectVersion reference, from crds/projectversion.yaml.

The CRD is the single source: descriptions, defaults, bounds and rules are
read from it, so the reference cannot drift (tests/api fail when docs/crd.md
differs from what this script writes). Usage:

    .venv/bin/python hack/crd_doc.py          # rewrite docs/crd.md
    .venv/bin/python hack/crd_doc.py --check  # exit 1 if docs/crd.md is stale
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[1]
CRD_PATH = ROOT / "crds" / "projectversion.yaml"
DOC_PATH = ROOT / "docs" / "crd.md"

Node = Mapping[str, Any]

#: The API server owns ObjectMeta; a CRD may not describe it.
_METADATA = "Standard object metadata; only name is restricted (table below)."

_OPERATOR_STATE = """\
## Where the operator keeps its own state

kopf keeps bookkeeping per object only for change handlers, daemons and timers:
the progress of its handlers, the last handled spec (the diff base) and a
finalizer. The operator registers none of them, only event handlers and indices
(`kiu.controller.handlers`). So kopf puts no finalizer on a ProjectVersion
(deleting one never waits for the operator; owner references make the garbage
collector delete its objects), stores no diff base, and posts no Events of its
own (`settings.posting.enabled = False`: the reconciler posts Events with reasons
people can act on). The schema has no `status.kopf` and keeps no unknown status
fields: the API server prunes anything in status that is not listed below,
silently. So the operator:

- sets `settings.persistence.progress_storage =
  kopf.AnnotationsProgressStorage(prefix="kiu.dev")`, so that whatever handler
  progress kopf might record goes to annotations, never to status;
- returns nothing from its handlers, since kopf stores a handler's return value
  in `status.<handler id>`, which would be pruned;
- writes status only in the shape of `kiu.api.projectversion.Status`
  (`model_dump(by_alias=True, mode="json", exclude_none=True)`).

Why: status stays the public contract, identical to the models in `kiu.api`
(tests check field by field), and `kubectl get -o yaml` shows only what users
need.
"""


def render(crd: Node) -> str:
    """The whole reference page for ``crd``."""
    (version,) = crd["spec"]["versions"]
    schema = version["schema"]["openAPIV3Schema"]
    names = crd["spec"]["names"]
    lines = [
        f"# {names['kind']} reference",
        "",
        f"<!-- Generated from crds/{CRD_PATH.name} by hack/crd_doc.py: do not edit by hand. -->",
        "",
        _text(schema["description"]),
        "",
        "| | |",
        "|---|---|",
        f"| API version | `{crd['spec']['group']}/{version['name']}` |",
        f"| Kind | `{names['kind']}` (list: `{names['listKind']}`) |",
        f"| Scope | {crd['spec']['scope']} |",
        f"| Names | `{names['plural']}`, `{names['singular']}`; short name "
        + ", ".join(f"`{short}`" for short in names.get("shortNames", ()))
        + "; category "
        + ", ".join(f"`{category}`" for category in names.get("categories", ()))
        + " |",
        f"| Subresources | {_subresources(version['subresources'])} |",
        "",
        "## Columns of `kubectl get`",
        "",
        "| Column | Value | Shown | Description |",
        "|---|---|---|---|",
    ]
    for column in version.get("additionalPrinterColumns", ()):
        shown = "with `-o wide`" if column.get("priority") else "always"
        description = _cell(column.get("description", "Time since creation."))
        lines.append(f"| {column['name']} | `{column['jsonPath']}` | {shown} | {description} |")
    lines += ["", _OPERATOR_STATE, "## Fields", ""]
    lines.append(
        "One table per object. Bounds are enforced by the API server, as are the rules"
        " listed under a table (CEL), so a bad object is refused at `kubectl apply` with"
        " a message naming the field."
    )
    for path, node in _objects(schema, names["kind"]):
        lines += ["", *_table(path, node)]
    return "\n".join(lines) + "\n"


def _subresources(subresources: Node) -> str:
    parts = []
    if "status" in subresources:
        parts.append("status")
    if "scale" in subresources:
        scale = subresources["scale"]
        parts.append(
            f"scale (replicas: `{scale['specReplicasPath']}`, ready replicas:"
            f" `{scale['statusReplicasPath']}`, selector: `{scale.get('labelSelectorPath', '')}`)"
        )
    return "; ".join(parts)


def _objects(node: Node, path: str) -> Iterator[tuple[str, Node]]:
    """Every object with named fields, parents first, in schema order."""
    if "properties" in node:
        yield path, node
    prefix = "" if path[:1].isupper() else f"{path}."
    for name, child in node.get("properties", {}).items():
        yield from _objects(child, f"{prefix}{name}")
    if "items" in node:
        yield from _objects(node["items"], f"{path}[]")
    if isinstance(node.get("additionalProperties"), Mapping):
        yield from _objects(node["additionalProperties"], f"{path}.<key>")


def _table(path: str, node: Node) -> list[str]:
    lines = [f"### `{path}`", ""]
    if "description" in node and not path[:1].isupper():  # the root's opens the page
        lines += [_text(node["description"]), ""]
    lines += ["| Field | Type | Default | Bounds | Description |", "|---|---|---|---|---|"]
    required = set(node.get("required", ()))
    for name, child in node["properties"].items():
        default = "required" if name in required else _default(child)
        lines.append(
            f"| `{name}` | {_type(child)} | {default} | {_cell(_bounds(child))}"
            f" | {_cell(child.get('description', _METADATA if name == 'metadata' else ''))} |"
        )
    rules = list(_rules(node))
    if rules:
        lines += ["", "| Rule on | CEL rule | Message |", "|---|---|---|"]
        lines += [
            f"| {where} | `{_cell(rule['rule'])}` | {_cell(rule['message'])} |"
            for where, rule in rules
        ]
    return lines


def _rules(node: Node) -> Iterator[tuple[str, Node]]:
    """Rules on the object and on its fields that have no table of their own."""
    for rule in node.get("x-kubernetes-validations", ()):
        yield "the object", rule
    for name, child in node["properties"].items():
        if "properties" in child:
            continue  # listed in the child's own table
        for rule in child.get("x-kubernetes-validations", ()):
            yield _rule_target(name, rule), rule
        for rule in child.get("items", {}).get("x-kubernetes-validations", ()):
            yield f"each of `{name}`", rule


def _rule_target(name: str, rule: Node) -> str:
    return f"`{name}`, on update" if "oldSelf" in rule["rule"] else f"`{name}`"


def _type(node: Node) -> str:
    if node.get("x-kubernetes-int-or-string"):
        return "integer or string"
    kind = node["type"]
    if kind == "array":
        items = _type(node["items"])
        match node.get("x-kubernetes-list-type"):
            case "set":
                return f"set of {items}"
            case "map":
                keys = ", ".join(node.get("x-kubernetes-list-map-keys", ()))
                return f"list of {items}, one per {keys}"
        return f"list of {items}"
    if kind == "object" and isinstance(node.get("additionalProperties"), Mapping):
        return f"map of {_type(node['additionalProperties'])}"
    if node.get("format") == "date-time":
        return "string (RFC 3339 time)"
    return str(kind)


def _default(node: Node) -> str:
    if "default" not in node:
        return ""
    return f"`{json.dumps(node['default'], separators=(', ', ': '))}`"


def _bounds(node: Node) -> str:
    parts = []
    if "enum" in node:
        parts.append("one of " + ", ".join(f"`{value}`" for value in node["enum"]))
    low, high = node.get("minimum"), node.get("maximum")
    exclusive = node.get("exclusiveMinimum", False)
    if low is not None and high is not None and not exclusive:
        parts.append(f"{low} to {high}")
    else:
        if low is not None:
            parts.append(f"{'>' if exclusive else '>='} {low}")
        if high is not None:
            parts.append(f"<= {high}")
    short, long = node.get("minLength"), node.get("maxLength")
    if long is not None:
        parts.append(f"{short} to {long} characters" if short else f"at most {long} characters")
    if "maxItems" in node:
        parts.append(f"at most {node['maxItems']} items")
    if "maxProperties" in node:
        parts.append(f"at most {node['maxProperties']} entries")
    if "pattern" in node:
        parts.append(f"pattern `{node['pattern']}`")
    for key, label in (("items", "each item"), ("additionalProperties", "each value")):
        child = node.get(key)
        if isinstance(child, Mapping) and "properties" not in child and (inner := _bounds(child)):
            parts.append(f"{label}: {inner}")
    return "; ".join(parts)


def _text(text: str) -> str:
    return " ".join(text.split())


def _cell(text: str) -> str:
    """Text for a table cell: one line, pipes escaped (also inside code spans, as GFM wants)."""
    return _text(text).replace("|", "\\|")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="exit 1 if docs/crd.md is stale")
    args = parser.parse_args(argv)
    text = render(yaml.safe_load(CRD_PATH.read_text()))
    if args.check:
        if not DOC_PATH.exists() or DOC_PATH.read_text() != text:
            print(f"{DOC_PATH.relative_to(ROOT)} is stale: run hack/crd_doc.py", file=sys.stderr)
            return 1
        return 0
    DOC_PATH.write_text(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
