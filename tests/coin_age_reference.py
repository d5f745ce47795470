"""A straightforward per-output reference for the UTXO and coin-age facts and metrics (docs/data-contract.md).

It follows every output from its creation to its spend by outpoint (never reading a node's prevouts) and
computes, per block and per UTC day, what MQNODE computes in SQL from its compact per-block facts:
- the UTXO set after each block: outputs, value, bogosize (50 + script length); unspendable outputs
  (OP_RETURN first byte, scripts over 10,000 bytes) and the genesis coinbase never enter it;
- per spend: age = spending block's median time past - creation block's (both recomputed here from header
  times), so CDD, young (< 1 hour) spends, and per UTC day the realized cap at a fixed price series,
  SOPR / adjusted SOPR, realized profit / loss and the supply by age band at the end of the day.
Input: blocks in height order as (height, header time, [(txid, [(prev txid, vout)], [(value, script bytes)])]),
the coinbase first (its inputs are ignored).
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from decimal import ROUND_HALF_UP, Decimal

SAT = Decimal(100_000_000)
BANDS = (
    ("lt_1d", 0),
    ("1d_1w", 1),
    ("1w_1m", 7),
    ("1m_3m", 30),
    ("3m_6m", 90),
    ("6m_12m", 180),
    ("1y_2y", 365),
    ("2y_3y", 730),
    ("3y_5y", 1095),
    ("5y_7y", 1825),
    ("7y_10y", 2555),
    ("gt_10y", 3650),
)


def q8(value: Decimal) -> Decimal:
    """PostgreSQL's round(x, 8): halves away from zero."""
    return value.quantize(Decimal("0.00000001"), ROUND_HALF_UP)


def band_of(age_days: int) -> str:
    name = BANDS[0][0]
    for band, start in BANDS:
        if age_days >= start:
            name = band
    return name


def utc_day(epoch: int) -> date:
    return datetime.fromtimestamp(epoch, UTC).date()


def unspendable(script: bytes) -> bool:
    return script[:1] == b"\x6a" or len(script) > 10_000


@dataclass
class Output:
    value: int
    script_len: int
    height: int
    mtp: int


@dataclass
class BlockFacts:
    height: int
    mtp: int
    created: list[Output] = field(default_factory=list)
    spent: list[Output] = field(default_factory=list)
    utxo_count: int = 0
    utxo_value: int = 0
    utxo_bogo: int = 0


class Ledger:
    """Every block's created and spent outputs and the UTXO set after it (the set itself is kept per day)."""

    def __init__(self) -> None:
        self.utxo: dict[tuple[str, int], Output] = {}
        self.blocks: dict[int, BlockFacts] = {}
        self.times: list[int] = []
        self.day_sets: dict[date, list[Output]] = {}  # the UTXO set at the end of each day with a block

    def add_block(self, height: int, header_time: int, txs: list[tuple[str, list[tuple[str, int]], list]]) -> None:
        self.times.append(header_time)
        window = sorted(self.times[-11:])  # Core's median time past: the middle of the last 11 header times
        mtp = window[len(window) // 2]
        facts = BlockFacts(height, mtp)
        for index, (txid, inputs, outputs) in enumerate(txs):
            if index > 0:
                for prev in inputs:
                    facts.spent.append(self.utxo.pop(prev))
            if height == 0:
                continue  # the genesis coinbase never enters the UTXO set
            for n, (value, script) in enumerate(outputs):
                if unspendable(script):
                    continue
                out = Output(value, len(script), height, mtp)
                self.utxo[(txid, n)] = out
                facts.created.append(out)
        facts.utxo_count = len(self.utxo)
        facts.utxo_value = sum(o.value for o in self.utxo.values())
        facts.utxo_bogo = sum(50 + o.script_len for o in self.utxo.values())
        self.blocks[height] = facts
        self.day_sets[utc_day(mtp)] = list(self.utxo.values())

    # ---- per-day metrics --------------------------------------------------------------------------
    def days(self) -> list[date]:
        return sorted(self.day_sets)

    def blocks_of_day(self, day: date) -> list[BlockFacts]:
        return [b for b in self.blocks.values() if utc_day(b.mtp) == day and b.height > 0]

    def cdd(self, day: date) -> Decimal:
        total = sum(o.value * (b.mtp - o.mtp) for b in self.blocks_of_day(day) for o in b.spent)
        return q8(Decimal(total) / 86400 / SAT)

    def realized_cap(self, day: date, close) -> Decimal:
        total = sum((Decimal(o.value) * close(utc_day(o.mtp)) / SAT for o in self.day_sets[day]), Decimal(0))
        return q8(total)

    def sopr(self, day: date, close, adjusted: bool = False) -> Decimal | None:
        spends = [(o, b) for b in self.blocks_of_day(day) for o in b.spent if not adjusted or b.mtp - o.mtp >= 3600]
        value = sum((Decimal(o.value) * close(day) for o, _ in spends), Decimal(0))
        realized = sum((Decimal(o.value) * close(utc_day(o.mtp)) for o, _ in spends), Decimal(0))
        if not realized:
            return None
        return q8(value / realized)

    def realized_profit_loss(self, day: date, close) -> tuple[Decimal, Decimal]:
        profit = loss = Decimal(0)
        for b in self.blocks_of_day(day):
            for o in b.spent:
                diff = (close(day) - close(utc_day(o.mtp))) * o.value / SAT
                if diff > 0:
                    profit += diff
                else:
                    loss -= diff
        return q8(profit), q8(loss)

    def age_bands(self, day: date) -> dict[str, int]:
        bands: dict[str, int] = defaultdict(int)
        for o in self.day_sets[day]:
            bands[band_of((day - utc_day(o.mtp)).days)] += o.value
        return {band: bands.get(band, 0) for band, _ in BANDS}

    def holders(self, day: date) -> tuple[int, int]:
        sth = sum(o.value for o in self.day_sets[day] if (day - utc_day(o.mtp)).days < 155)
        lth = sum(o.value for o in self.day_sets[day] if (day - utc_day(o.mtp)).days >= 155)
        return sth, lth

    def holder_realized_caps(self, day: date, close) -> tuple[Decimal, Decimal]:
        def cap(outputs) -> Decimal:
            return q8(sum((Decimal(o.value) * close(utc_day(o.mtp)) / SAT for o in outputs), Decimal(0)))

        coins = self.day_sets[day]
        return (
            cap(o for o in coins if (day - utc_day(o.mtp)).days < 155),
            cap(o for o in coins if (day - utc_day(o.mtp)).days >= 155),
        )
