"""Avro schema compatibility by the specification's resolution rules.

`incompatibilities(reader, writer)` lists why data written with `writer` could not be
read with `reader`, each naming the field. A schema change is accepted when the new
version and the newest released one can read each other (full compatibility), so
producers and consumers can be upgraded in either order.
"""

from __future__ import annotations

from typing import Any

from pipeline.schemas import AvroSchema

_PROMOTIONS = {
    "int": {"int", "long", "float", "double"},
    "long": {"long", "float", "double"},
    "float": {"float", "double"},
    "string": {"string", "bytes"},
    "bytes": {"bytes", "string"},
}


def _named_types(node: Any, namespace: str, out: dict[str, Any]) -> None:
    if isinstance(node, list):
        for branch in node:
            _named_types(branch, namespace, out)
    elif isinstance(node, dict):
        kind = node.get("type")
        if kind in ("record", "enum", "fixed"):
            ns = node.get("namespace", namespace)
            full = node["name"] if "." in node["name"] else f"{ns}.{node['name']}".lstrip(".")
            out[full] = node
            out.setdefault(node["name"], node)
            for f in node.get("fields", []):
                _named_types(f["type"], ns, out)
        elif kind == "array":
            _named_types(node["items"], namespace, out)
        elif kind == "map":
            _named_types(node["values"], namespace, out)
        elif isinstance(kind, (dict, list)):
            _named_types(kind, namespace, out)


class _Checker:
    def __init__(self, reader: AvroSchema, writer: AvroSchema) -> None:
        self.reader_types: dict[str, Any] = {}
        self.writer_types: dict[str, Any] = {}
        _named_types(reader.definition, reader.definition.get("namespace", ""), self.reader_types)
        _named_types(writer.definition, writer.definition.get("namespace", ""), self.writer_types)
        self.problems: list[str] = []
        self._visiting: set[tuple[str, str]] = set()

    @staticmethod
    def _norm(node: Any, named: dict[str, Any]) -> Any:
        while True:
            if isinstance(node, str) and node in named:
                node = named[node]
            elif isinstance(node, dict) and isinstance(node.get("type"), (dict, list)):
                node = node["type"]
            elif isinstance(node, dict) and node.get("type") in named:
                node = named[node["type"]]
            else:
                return node

    @staticmethod
    def _kind(node: Any) -> str:
        if isinstance(node, list):
            return "union"
        if isinstance(node, dict):
            return str(node["type"])
        return str(node)

    def matches(self, reader: Any, writer: Any, path: str) -> bool:
        """Check one pair; record problems; True if they resolve."""
        before = len(self.problems)
        self.check(reader, writer, path)
        return len(self.problems) == before

    def check(self, reader: Any, writer: Any, path: str) -> None:
        reader = self._norm(reader, self.reader_types)
        writer = self._norm(writer, self.writer_types)
        rk, wk = self._kind(reader), self._kind(writer)
        where = path or "(record)"
        if wk == "union":
            for branch in writer:
                self.check(reader, branch, path)
            return
        if rk == "union":
            candidates = [b for b in reader if b != "null"]
            for branch in reader:
                trial = _Checker.__new__(_Checker)
                trial.reader_types, trial.writer_types = self.reader_types, self.writer_types
                trial.problems, trial._visiting = [], self._visiting
                trial.check(branch, writer, path)
                if not trial.problems:
                    return
                if len(candidates) == 1 and branch == candidates[0]:
                    # An optional field: the one real branch explains the mismatch best.
                    self.problems.extend(trial.problems)
                    return
            self.problems.append(f"field '{where}': written as {wk}, which the reader's union does not accept")
            return
        if wk in _PROMOTIONS or wk in ("null", "boolean", "double"):
            if rk != wk and rk not in _PROMOTIONS.get(wk, set()):
                self.problems.append(f"field '{where}': written as {wk}, read as {rk}")
            return
        if rk != wk:
            self.problems.append(f"field '{where}': written as {wk}, read as {rk}")
            return
        if wk == "record":
            self._record(reader, writer, path)
        elif wk == "enum":
            missing = [s for s in writer["symbols"] if s not in reader["symbols"]]
            if missing and "default" not in reader:
                self.problems.append(
                    f"field '{where}': enum {reader['name']} lacks symbol(s) {', '.join(missing)} and has no default"
                )
        elif wk == "array":
            self.check(reader["items"], writer["items"], f"{path}[]")
        elif wk == "map":
            self.check(reader["values"], writer["values"], f"{path}{{}}")
        elif wk == "fixed" and reader["size"] != writer["size"]:
            self.problems.append(f"field '{where}': fixed size {writer['size']} written, {reader['size']} read")

    def _record(self, reader: dict[str, Any], writer: dict[str, Any], path: str) -> None:
        key = (reader["name"], writer["name"])
        if key in self._visiting:
            return
        self._visiting.add(key)
        written = {f["name"]: f for f in writer["fields"]}
        for alias_owner in writer["fields"]:
            for alias in alias_owner.get("aliases", []):
                written.setdefault(alias, alias_owner)
        for field in reader["fields"]:
            sub = f"{path}.{field['name']}" if path else field["name"]
            source = written.get(field["name"]) or next(
                (written[a] for a in field.get("aliases", []) if a in written), None
            )
            if source is not None:
                self.check(field["type"], source["type"], sub)
            elif "default" not in field:
                self.problems.append(f"field '{sub}': required by the reader, absent in the writer, and no default")
        self._visiting.discard(key)


def incompatibilities(reader: AvroSchema, writer: AvroSchema) -> list[str]:
    """Why `reader` cannot read data written with `writer` (empty when it can)."""
    checker = _Checker(reader, writer)
    checker.check(reader.definition, writer.definition, "")
    return checker.problems


def full_incompatibilities(new: AvroSchema, old: AvroSchema) -> list[str]:
    """Problems in either direction between a new schema version and an old one."""
    backward = [f"new cannot read old: {p}" for p in incompatibilities(new, old)]
    forward = [f"old cannot read new: {p}" for p in incompatibilities(old, new)]
    return backward + forward
