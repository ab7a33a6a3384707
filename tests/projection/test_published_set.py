"""The published validation set is what issue #18 asks for: enough points from enough independent sources, every
field filled, and model/hardware ids the projection can resolve (or a recorded reason why not)."""

from __future__ import annotations

import pytest
import yaml

from moebench.catalog import get_hardware
from moebench.errors import MoebenchError
from moebench.projection import resolve_config
from tests.projection.published_set import DATA, PublishedSet, load_published


def test_at_least_40_points_from_5_sources_with_both_splits():
    ps = load_published()
    assert len(ps.points) >= 40
    assert len({p.source_group for p in ps.points}) >= 5
    assert {p.split for p in ps.points} == {"fit", "holdout"}


def test_every_field_is_present_in_the_file():
    raw = yaml.safe_load(DATA.read_text())
    required = {n for n, f in PublishedSet.model_fields["points"].annotation.__args__[0].model_fields.items()
                if f.is_required()}
    for pt in raw["points"]:
        missing = required - pt.keys()
        assert not missing, f"{pt.get('id')}: missing {sorted(missing)}"


def test_ids_resolve_in_the_catalog_or_say_why_not():
    for p in load_published().points:
        if p.unsupported:
            continue
        try:
            resolve_config(p.model)
            get_hardware(p.hardware)
        except MoebenchError as e:
            pytest.fail(f"{p.id}: {e} (mark it `unsupported: <reason>` if the catalog cannot hold it)")


def test_a_point_whose_split_disagrees_with_its_source_is_rejected():
    raw = yaml.safe_load(DATA.read_text())
    raw["points"][0]["split"] = "holdout" if raw["points"][0]["split"] == "fit" else "fit"
    with pytest.raises(ValueError, match="split"):
        PublishedSet.model_validate(raw)
