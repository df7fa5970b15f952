"""Whether a new JSON Schema of an event can still be read by readers of an older one.

Inside a major version a schema may only gain optional fields. A removed, renamed or
retyped field, or a new required field, breaks an older reader (or a newer reader of an
older writer's messages) and needs a new major version: a new topic.
"""

from __future__ import annotations

from typing import Any

Schema = dict[str, Any]


def _resolve(node: Schema, root: Schema) -> Schema:
    while "$ref" in node:
        name = node["$ref"].rsplit("/", 1)[-1]
        node = root.get("$defs", {})[name]
    return node


def _shape(node: Schema, root: Schema) -> Any:
    """What a value of this node looks like, without descriptions, titles, defaults or examples."""
    node = _resolve(node, root)
    if "anyOf" in node:
        return ("anyOf", sorted((_shape(option, root) for option in node["anyOf"]), key=repr))
    if "enum" in node or "const" in node:
        return ("enum", sorted(node.get("enum", [node.get("const")]), key=repr))
    kind = node.get("type")
    if kind == "object":
        properties = node.get("properties", {})
        return ("object", tuple(sorted((name, _shape(p, root)) for name, p in properties.items())),
                tuple(sorted(node.get("required", []))),
                _shape(node["additionalProperties"], root) if isinstance(node.get("additionalProperties"), dict) else None)
    if kind == "array":
        return ("array", _shape(node.get("items", {}), root))
    return (kind, node.get("format"))


def breaking_changes(old: Schema, new: Schema, path: str = "") -> list[str]:
    """Every change from `old` to `new` that an older reader or writer could not live with."""
    return _compare(old, new, old, new, path or old.get("title", "event"))


def _compare(old: Schema, new: Schema, old_root: Schema, new_root: Schema, path: str) -> list[str]:
    old, new = _resolve(old, old_root), _resolve(new, new_root)
    if old.get("type") == "object" and new.get("type") == "object" and "properties" in old:
        problems = []
        old_props, new_props = old.get("properties", {}), new.get("properties", {})
        old_required, new_required = set(old.get("required", [])), set(new.get("required", []))
        for name, old_prop in old_props.items():
            if name not in new_props:
                problems.append(f"{path}.{name}: removed (or renamed)")
            else:
                problems += _compare(old_prop, new_props[name], old_root, new_root, f"{path}.{name}")
        for name in sorted(new_required - old_required):
            problems.append(f"{path}.{name}: new required field" if name not in old_props
                            else f"{path}.{name}: became required")
        return problems
    if "anyOf" in old and "anyOf" in new:
        old_options = {_kind(o, old_root): o for o in old["anyOf"]}
        new_options = {_kind(o, new_root): o for o in new["anyOf"]}
        if set(old_options) != set(new_options):
            return [f"{path}: type changed from {sorted(old_options)} to {sorted(new_options)}"]
        return [problem for kind, option in old_options.items()
                for problem in _compare(option, new_options[kind], old_root, new_root, path)]
    if old.get("type") == "array" and new.get("type") == "array":
        return _compare(old.get("items", {}), new.get("items", {}), old_root, new_root, f"{path}[]")
    if _shape(old, old_root) != _shape(new, new_root):
        return [f"{path}: type changed from {_describe(old, old_root)} to {_describe(new, new_root)}"]
    return []


def _kind(node: Schema, root: Schema) -> str:
    node = _resolve(node, root)
    return "enum" if "enum" in node or "const" in node else str(node.get("type"))


def _describe(node: Schema, root: Schema) -> str:
    shape = _shape(node, root)
    return repr(shape) if len(repr(shape)) < 120 else repr(shape)[:117] + "..."
