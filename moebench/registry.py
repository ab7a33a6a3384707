"""Name -> one object, from Python entry points; built-ins come through the same door.

Only the requested plugin is imported. An editable install can expose the same distribution twice;
identical targets collapse, different targets for one name are a conflict.
"""

from __future__ import annotations

import difflib
import importlib
import importlib.metadata as md
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from moebench.errors import BadInput

T = TypeVar("T")


@dataclass(frozen=True)
class Entry:
    name: str
    target: str  # "module:attr"
    dist: str  # distribution that provides it ("?" when unknown)


def did_you_mean(name: str, choices: list[str]) -> str:
    close = difflib.get_close_matches(name, choices, n=3, cutoff=0.5)
    return f" (did you mean {', '.join(repr(c) for c in close)}?)" if close else ""


class Registry(Generic[T]):
    def __init__(self, group: str, kind: type | tuple[type, ...] | None = None):
        self.group = group
        self.kind = kind
        self._cache: dict[str, T] = {}

    def entries(self) -> dict[str, Entry]:
        found: dict[str, Entry] = {}
        for ep in md.entry_points(group=self.group):
            dist = getattr(ep.dist, "name", None) or "?"
            entry = Entry(ep.name, ep.value, dist)
            prior = found.get(ep.name)
            if prior is not None and prior.target != entry.target:
                raise BadInput(
                    f"plugin conflict in {self.group}: {ep.name!r} is provided by "
                    f"{prior.dist} ({prior.target}) and {entry.dist} ({entry.target})"
                )
            found[ep.name] = entry
        return found

    def names(self) -> list[str]:
        return sorted(self.entries())

    def load(self, name: str) -> T:
        if name in self._cache:
            return self._cache[name]
        entries = self.entries()
        if name not in entries:
            raise BadInput(f"unknown {self.group.split('.')[-1].rstrip('s')} {name!r}{did_you_mean(name, list(entries))}")
        entry = entries[name]
        module_name, _, attr = entry.target.partition(":")
        try:
            obj: Any = importlib.import_module(module_name)
            for part in attr.split(".") if attr else []:
                obj = getattr(obj, part)
        except Exception as exc:  # noqa: BLE001 - a plugin's module can raise anything at import: name the plugin
            raise BadInput(f"plugin {name!r} ({entry.target}, from {entry.dist}) failed to load: "
                           f"{type(exc).__name__}: {exc}") from exc
        if self.kind is not None and not isinstance(obj, self.kind):
            raise BadInput(f"plugin {name!r} ({entry.target}) is a {type(obj).__name__}, expected {self.kind}")
        self._cache[name] = obj
        return obj
