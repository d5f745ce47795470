"""The checkpoint keys of core.sync_checkpoints (chain, component, interval), as the database defines them in
core.checkpoint_keys() (sql/functions/010_common.sql): Python reads them from here, SQL through
core.checkpoint_component(stage, names...); tests/test_checkpoint_keys.py checks that both say the same and
that no other file spells a key out.

A stage with a fixed key has it whole; a family (one key per venue market, rollup, metric or lane) has a
component pattern whose %s are filled with the names, and an interval that is the member's own when None.
"""

from __future__ import annotations

CHAIN = "btc"

# stage -> (chain, component or pattern, interval or None: the member's)
KEYS: dict[str, tuple[str, str, str | None]] = {
    "node_tip": (CHAIN, "btc_node_tip", "block"),
    "raw_blocks": (CHAIN, "btc_raw_block_ingestion", "block"),
    "primitive_10m": (CHAIN, "btc_primitive_10m_builder", "10m"),
    "price_composer": (CHAIN, "btc_price_canonical_composer", "10m"),
    "price_source": (CHAIN, "btc_price_source_%s", "10m"),  # %s: mq_price_source_registry.source_name
    "rollup": (CHAIN, "rollup_%s", None),  # %s: rollup_registry.rollup_name; its interval
    "metric": (CHAIN, "btc_metric_%s_%s", None),  # %s: metric_name, interval; that interval
    "lane": (CHAIN, "worker_%s", "heartbeat"),  # %s: the lane (heartbeats)
}


def key(stage: str, *names: str, interval: str | None = None) -> tuple[str, str, str]:
    """(chain, component, interval) of a stage's checkpoint; a family's member by its names (and interval)."""
    chain, component, fixed = KEYS[stage]
    if component.count("%s") != len(names):
        raise ValueError(f"checkpoint {stage} takes {component.count('%s')} name(s), got {len(names)}")
    if (fixed is None and interval is None) or (fixed is not None and interval not in (None, fixed)):
        raise ValueError(f"checkpoint {stage}: interval {interval!r} (the stage's: {fixed!r})")
    return chain, component % names, fixed or interval


NODE_TIP = key("node_tip")
RAW_BLOCKS = key("raw_blocks")
PRIMITIVE_10M = key("primitive_10m")
PRICE_COMPOSER = key("price_composer")


def price_source(source_name: str) -> tuple[str, str, str]:
    return key("price_source", source_name)


def metric(metric_name: str, interval: str) -> tuple[str, str, str]:
    return key("metric", metric_name, interval, interval=interval)


def lane(name: str) -> tuple[str, str, str]:
    return key("lane", name)
