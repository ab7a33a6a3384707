"""The base of every typed document moebench reads from YAML (workloads, kernel workloads, catalogs), below
all of them so that each can use it."""

from __future__ import annotations

from typing import Hashable, Sequence, TypeVar

from pydantic import BaseModel, ConfigDict

H = TypeVar("H", bound=Hashable)


class Strict(BaseModel):
    # strict: YAML already types its scalars, so `prompt_tokens: true` or `repeats: "10"` is a mistake, not a 1 or
    # a 10 (ints still pass where a float is asked). Every YAML the tool reads validates through this base.
    # allow_inf_nan: `.inf` and `.nan` are YAML floats, and one as a price or a timeout would turn every number
    # computed from it into NaN; every float field of every schema is finite.
    model_config = ConfigDict(frozen=True, extra="forbid", strict=True, allow_inf_nan=False)


def repeated(values: Sequence[H]) -> list[H]:
    """The values given more than once, in order (a level or batch size twice makes two records of one key)."""
    return sorted({v for v in values if values.count(v) > 1})  # type: ignore[type-var]
