"""The getblockstats equality test: MQNODE's per-block facts against Bitcoin Core's own statistics.

The real loader (`mqnode btc backfill` as a subprocess, through Core's cookie file) ingests the
session's regtest chain (tests/regtest_chain.py: ~300 blocks, >= 20,000 transactions of every script
type) into a fresh database; then for EVERY block the stored facts (btc_primitive_block, btc_tx_raw,
btc_primitive_10m) are compared with `getblockstats <height>`, and with the chain builder's own
ledger (each transaction's fee, size and weight as built), on getblock verbosity 2 and 3, on each
database engine.

Core's definitions (src/rpc/blockchain.cpp, getblockstats) and how they map onto MQNODE's columns
(docs/data-contract.md). Where the two mean different things the equivalent value is compared:
- txs: every transaction (coinbase included) = tx_count.
- ins: inputs without the coinbase's = input_count (MQNODE also leaves the coinbase input out).
- outs: every output, coinbase and OP_RETURN included = output_count.
- total_out: outputs of the non-coinbase transactions only; MQNODE's total_out_sat includes the
  coinbase, so total_out = total_out_sat - coinbase_out_sat (= the 10m table's transferred_sat_10m).
- totalfee = total_fee_sat (every fee is known from getblock 2/3, so no coinbase fallback).
- subsidy: the nominal subsidy of the height = max_subsidy_sat. MQNODE's subsidy_sat / issued_sat is
  what the coinbase actually issued: payout - fees, capped at the nominal subsidy. generateblock's
  coinbase pays the subsidy only (fees unclaimed), so issued_sat = subsidy - totalfee here.
- total_size / total_weight: non-coinbase transactions only; MQNODE's tx_size_total_bytes includes
  the coinbase, so total_size = tx_size_total_bytes - the coinbase row's size; total_weight is the
  sum of btc_tx_raw.weight over non-coinbase rows (btc_primitive_block has no such column).
- swtxs / swtotal_size / swtotal_weight: non-coinbase transactions with witness data =
  segwit_tx_count / sw_total_size_bytes / sw_total_weight_wu.
- utxo_increase: outs - ins (unspendable outputs counted, unlike utxo_increase_actual)
  = output_count - input_count = utxo_increase_10m.
- minfeerate / maxfeerate: Core takes trunc(fee * 4 / weight) per transaction (sat per virtual byte
  from the weight); MQNODE's min/max_feerate_sat_vb is fee / vsize with vsize = ceil(weight / 4),
  rounded to 8 decimals (data contract: sat/vB). Different definitions: Core's figure is compared
  with trunc(4 * fee_sat / weight) over btc_tx_raw, MQNODE's column with fee / vsize from the builder's
  ledger. A block without transactions: Core says 0, MQNODE NULL (undefined, never a fake 0).
- medianfee: Core's truncated median (integer mean of the two middle fees); MQNODE's
  median_fee_sat_10m is the exact median (NUMERIC mean of the two middle fees) of the bucket, so where
  the bucket holds exactly one block with transactions, trunc(median_fee_sat_10m) = medianfee; an
  empty block: Core 0, MQNODE NULL. Buckets of 2-3 blocks: the exact median of the builder's fees.
- avgfee: trunc(totalfee / (txs - 1)) = trunc(avg_fee_sat) (MQNODE rounds to 8 decimals).
- minfee / maxfee: min/max of btc_tx_raw.fee_sat over the block (0 / 0 for an empty block).
- time / mediantime / blockhash: block_time / median_time / block_hash; a block's bucket is the
  10 minutes holding its median time past.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator
from datetime import UTC, datetime
from decimal import ROUND_DOWN, Decimal

import psycopg
import pytest

from tests.bitcoind import BitcoinNode
from tests.regtest_chain import KINDS, RegtestChain, regtest_subsidy, run_backfill, running_node, session_chain

pytestmark = pytest.mark.timeout(1200)


def truncated_median(values: list[int]) -> int:
    """Core's CalculateTruncatedMedian."""
    if not values:
        return 0
    s = sorted(values)
    n = len(s)
    return s[n // 2] if n % 2 else (s[n // 2 - 1] + s[n // 2]) // 2


def exact_median(values: list[int]) -> Decimal | None:
    if not values:
        return None
    s = sorted(values)
    n = len(s)
    return Decimal(s[n // 2]) if n % 2 else Decimal(s[n // 2 - 1] + s[n // 2]) / 2


def trunc(value: Decimal | None) -> int | None:
    return None if value is None else int(value.to_integral_value(ROUND_DOWN))


def rate8(fee: int, vsize: int) -> Decimal:
    return (Decimal(fee) / Decimal(vsize)).quantize(Decimal("0.00000001"))


def bucket_of(epoch: int) -> datetime:
    return datetime.fromtimestamp(epoch - epoch % 600, UTC)


@pytest.fixture(scope="session")
def regtest_chain() -> RegtestChain:
    return session_chain()


@pytest.fixture
def regtest_node(regtest_chain, tmp_path) -> Iterator[BitcoinNode]:
    with running_node(regtest_chain, tmp_path, ["-rest"]) as node:  # REST: the raw-block source
        yield node


@pytest.fixture(scope="module")
def core_stats(regtest_chain: RegtestChain, tmp_path_factory) -> dict[int, dict]:
    """getblockstats of every height (from a node of its own, so tests do not pay for it twice)."""
    heights = range(1, regtest_chain.tip_height + 1)
    with running_node(regtest_chain, tmp_path_factory.mktemp("stats")) as node:
        stats = node.batch([("getblockstats", h) for h in heights])
    return dict(zip(heights, stats, strict=True))


def test_chain_is_what_the_tests_need(regtest_chain: RegtestChain, core_stats):
    """The session chain has the size and variety the comparisons rely on (Core's own counts)."""
    tx_heights = [h for h in core_stats if h >= regtest_chain.first_tx_height]
    assert len(tx_heights) >= 200
    assert sum(core_stats[h]["txs"] - 1 for h in core_stats) == regtest_chain.tx_count >= 20_000
    for kind in KINDS:  # every script type both created and spent in thousands
        assert regtest_chain.input_kinds[kind] >= 2_000, kind
        assert regtest_chain.output_kinds[kind] >= 2_000, kind
    assert regtest_chain.op_return_outputs >= 200
    assert max(core_stats[h]["ins"] for h in core_stats) > 500  # consolidations
    assert max(t.outputs for txs in regtest_chain.txs.values() for t in txs) >= 200  # batched payments
    assert max(t.inputs for txs in regtest_chain.txs.values() for t in txs) >= 40  # consolidations
    rates = sorted(t.fee * 4 // t.weight for txs in regtest_chain.txs.values() for t in txs)
    assert rates[0] >= 1 and rates[-1] >= 150 and rates[len(rates) // 2] < 40  # 1..200 sat/vB, skewed low
    per_bucket = defaultdict(int)
    for h in core_stats:
        per_bucket[bucket_of(core_stats[h]["mediantime"])] += 1
    sizes = sorted(per_bucket.values())
    assert sizes.count(1) > 0.8 * len(sizes)
    assert sum(1 for s in sizes if s >= 2) >= 5 and 3 in sizes
    first, last = min(per_bucket), max(per_bucket)
    assert (last - first).total_seconds() / 600 + 1 - len(per_bucket) >= 5  # empty buckets (gaps)
    assert {core_stats[h]["subsidy"] for h in core_stats} == {regtest_subsidy(h) for h in core_stats}
    assert len({regtest_subsidy(h) for h in core_stats}) >= 2  # a regtest halving (every 150 blocks) inside


class Mismatches:
    """Field-by-field comparison; the assertion lists every field that differs anywhere."""

    def __init__(self) -> None:
        self.checked: dict[str, int] = defaultdict(int)
        self.bad: dict[str, list[tuple]] = defaultdict(list)

    def eq(self, field: str, where: object, core: object, mqnode: object) -> None:
        self.checked[field] += 1
        if core != mqnode:
            self.bad[field].append((where, core, mqnode))

    def summary(self) -> str:
        lines = []
        for field, n in sorted(self.checked.items()):
            bad = self.bad.get(field, [])
            status = "equal" if not bad else f"{len(bad)} differ, e.g. (where, expected, mqnode) {bad[:3]}"
            lines.append(f"  {field}: {n} compared, {status}")
        return "\n".join(lines)


@pytest.mark.parametrize("verbosity", [2, 3, "rest"])
def test_every_block_equals_getblockstats(regtest_chain, regtest_node, core_stats, db_url, verbosity):
    """verbosity "rest": the raw-block source (Core's REST block + spent outputs, app/btc/rawblock.py)."""
    if verbosity == "rest":
        result = run_backfill(regtest_node, db_url, 3, source="rest")
    else:
        result = run_backfill(regtest_node, db_url, verbosity)
    assert result.returncode == 0, result.stderr[-4000:]
    tip = regtest_chain.tip_height
    assert f"heights 1..{tip}, {tip} blocks" in result.stdout, result.stdout

    m = compare(db_url, regtest_chain, core_stats)
    report = m.summary()
    print(f"\nverbosity {verbosity}, {db_url.rsplit('/', 1)[-1]}:\n{report}")
    assert not m.bad, f"fields that differ from Core's getblockstats:\n{report}"

    # The comparison sees a drift of one unit: one block's fee total and one transaction's weight.
    height = max(h for h in core_stats if core_stats[h]["txs"] > 3)
    with psycopg.connect(db_url) as conn:
        conn.execute(
            "UPDATE core.btc_primitive_block SET total_fee_sat = total_fee_sat + 1 WHERE height = %s", (height,)
        )
        conn.execute("UPDATE raw.btc_tx_raw SET weight = weight + 1 WHERE height = %s AND tx_index = 2", (height,))
    drifted = compare(db_url, regtest_chain, core_stats)
    assert {where for bad in drifted.bad.values() for where, *_ in bad} == {height}, drifted.summary()
    assert {
        "totalfee = total_fee_sat",
        "total_weight = sum(btc_tx_raw.weight) non-coinbase",
        "ledger sizes/weights = btc_tx_raw",
    } <= set(drifted.bad), drifted.summary()


def compare(db_url: str, regtest_chain: RegtestChain, core_stats: dict[int, dict]) -> Mismatches:
    """Every comparison of the module docstring, over every block and every 10m bucket."""
    tip = regtest_chain.tip_height
    with psycopg.connect(db_url) as conn:
        blocks = {
            r[0]: r
            for r in conn.execute(
                "SELECT height, block_hash, block_time, median_time, bucket_start_utc, tx_count, input_count,"
                " output_count, total_out_sat, coinbase_out_sat, total_fee_sat, max_subsidy_sat, subsidy_sat,"
                " issued_sat, miner_revenue_sat, tx_size_total_bytes, segwit_tx_count, sw_total_size_bytes,"
                " sw_total_weight_wu, min_feerate_sat_vb, max_feerate_sat_vb, avg_fee_sat, fees_known"
                " FROM core.btc_primitive_block ORDER BY height"
            ).fetchall()
        }
        txs = defaultdict(list)
        for height, is_coinbase, size, weight, fee in conn.execute(
            "SELECT height, is_coinbase, size, weight, fee_sat FROM raw.btc_tx_raw ORDER BY height, tx_index"
        ).fetchall():
            txs[height].append((is_coinbase, size, weight, fee))
        buckets = {
            r[0]: r
            for r in conn.execute(
                "SELECT bucket_start_utc, block_count, tx_count_10m, input_count_10m, output_count_10m,"
                " transferred_sat_10m, fees_sat_10m, segwit_tx_count_10m, sw_total_size_bytes_10m,"
                " sw_total_weight_wu_10m, utxo_increase_10m, median_fee_sat_10m, min_feerate_sat_vb_10m,"
                " max_feerate_sat_vb_10m, issued_sat_10m FROM core.btc_primitive_10m ORDER BY bucket_start_utc"
            ).fetchall()
        }
    assert sorted(blocks) == list(range(1, tip + 1))

    m = Mismatches()
    by_bucket: dict[datetime, list[int]] = defaultdict(list)
    for h, core in core_stats.items():
        (
            _,
            block_hash,
            block_time,
            median_time,
            bucket,
            tx_count,
            input_count,
            output_count,
            total_out_sat,
            coinbase_out_sat,
            total_fee_sat,
            max_subsidy_sat,
            subsidy_sat,
            issued_sat,
            miner_revenue_sat,
            tx_size_total_bytes,
            segwit_tx_count,
            sw_total_size_bytes,
            sw_total_weight_wu,
            min_feerate,
            max_feerate,
            avg_fee_sat,
            fees_known,
        ) = blocks[h]
        rows = txs[h]
        coinbase = [r for r in rows if r[0]]
        spends = [r for r in rows if not r[0]]
        fees = [r[3] for r in spends]
        ledger = regtest_chain.txs.get(h, [])
        by_bucket[bucket_of(core["mediantime"])].append(h)

        m.eq("blockhash = block_hash", h, core["blockhash"], block_hash)
        m.eq("time = block_time", h, core["time"], int(block_time.timestamp()))
        m.eq("mediantime = median_time", h, core["mediantime"], int(median_time.timestamp()))
        m.eq("bucket = 10m of mediantime", h, bucket_of(core["mediantime"]), bucket)
        m.eq("txs = tx_count", h, core["txs"], tx_count)
        m.eq("txs = btc_tx_raw rows", h, core["txs"], len(rows))
        m.eq("ins = input_count", h, core["ins"], input_count)
        m.eq("outs = output_count", h, core["outs"], output_count)
        m.eq("total_out = total_out_sat - coinbase_out_sat", h, core["total_out"], total_out_sat - coinbase_out_sat)
        m.eq("totalfee = total_fee_sat", h, core["totalfee"], total_fee_sat)
        m.eq("fees_known", h, True, fees_known)
        m.eq("subsidy = max_subsidy_sat", h, core["subsidy"], max_subsidy_sat)
        payout = regtest_chain.coinbase_payouts[h]
        m.eq(
            "coinbase payout = coinbase_out_sat = miner_revenue_sat",
            h,
            (payout, payout),
            (coinbase_out_sat, miner_revenue_sat),
        )
        issued = min(max(payout - core["totalfee"], 0), core["subsidy"])
        m.eq(
            "issued = min(payout - totalfee, subsidy) = subsidy_sat = issued_sat",
            h,
            (issued, issued),
            (subsidy_sat, issued_sat),
        )
        m.eq(
            "total_size = tx_size_total_bytes - coinbase size",
            h,
            core["total_size"],
            tx_size_total_bytes - sum(r[1] for r in coinbase),
        )
        m.eq("total_weight = sum(btc_tx_raw.weight) non-coinbase", h, core["total_weight"], sum(r[2] for r in spends))
        m.eq("swtxs = segwit_tx_count", h, core["swtxs"], segwit_tx_count)
        m.eq("swtotal_size = sw_total_size_bytes", h, core["swtotal_size"], sw_total_size_bytes)
        m.eq("swtotal_weight = sw_total_weight_wu", h, core["swtotal_weight"], sw_total_weight_wu)
        m.eq("utxo_increase = output_count - input_count", h, core["utxo_increase"], output_count - input_count)
        core_rates = [fee * 4 // weight for _, _, weight, fee in spends]
        m.eq("minfeerate = min trunc(4 fee / weight) of btc_tx_raw", h, core["minfeerate"], min(core_rates, default=0))
        m.eq("maxfeerate = max trunc(4 fee / weight) of btc_tx_raw", h, core["maxfeerate"], max(core_rates, default=0))
        ledger_rates = [rate8(t.fee, t.vsize) for t in ledger]
        m.eq("min_feerate_sat_vb = min fee/vsize (ledger)", h, min(ledger_rates, default=None), min_feerate)
        m.eq("max_feerate_sat_vb = max fee/vsize (ledger)", h, max(ledger_rates, default=None), max_feerate)
        m.eq("medianfee = truncated median of btc_tx_raw fees", h, core["medianfee"], truncated_median(fees))
        m.eq(
            "minfee/maxfee = min/max btc_tx_raw fee",
            h,
            (core["minfee"], core["maxfee"]),
            (min(fees, default=0), max(fees, default=0)),
        )
        m.eq("avgfee = trunc(avg_fee_sat)", h, core["avgfee"], trunc(avg_fee_sat) if spends else 0)
        m.eq("ledger fees = btc_tx_raw fees", h, [t.fee for t in ledger], fees)
        m.eq("ledger sizes/weights = btc_tx_raw", h, [(t.size, t.weight) for t in ledger], [r[1:3] for r in spends])

    # The 10m backbone: one row per bucket from the first block's on; block membership by Core's mediantime.
    assert min(buckets) == min(by_bucket) and max(buckets) >= max(by_bucket)
    singles = multi = empty = 0
    for bucket, row in buckets.items():
        (
            _,
            block_count,
            tx_count_10m,
            inputs_10m,
            outputs_10m,
            transferred_10m,
            fees_10m,
            segwit_10m,
            sw_size_10m,
            sw_weight_10m,
            utxo_increase_10m,
            median_fee_10m,
            min_feerate_10m,
            max_feerate_10m,
            issued_10m,
        ) = row
        heights = by_bucket.get(bucket, [])
        stats = [core_stats[h] for h in heights]
        m.eq("10m block_count = blocks with mediantime in the bucket", bucket, len(heights), block_count)
        flows = (
            ("txs", tx_count_10m),
            ("ins", inputs_10m),
            ("outs", outputs_10m),
            ("total_out", transferred_10m),
            ("totalfee", fees_10m),
            ("swtxs", segwit_10m),
            ("swtotal_size", sw_size_10m),
            ("swtotal_weight", sw_weight_10m),
            ("utxo_increase", utxo_increase_10m),
        )
        for name, value in flows:  # one block: its stats; several: their sum; none: 0
            m.eq(f"10m sum of {name}", bucket, sum(s[name] for s in stats), value)
        m.eq(
            "10m issued = sum(subsidy - totalfee)", bucket, sum(s["subsidy"] - s["totalfee"] for s in stats), issued_10m
        )
        ledger = [t for h in heights for t in regtest_chain.txs.get(h, [])]
        rates = [rate8(t.fee, t.vsize) for t in ledger]
        m.eq(
            "10m min/max feerate = min/max fee/vsize (ledger)",
            bucket,
            (min(rates, default=None), max(rates, default=None)),
            (min_feerate_10m, max_feerate_10m),
        )
        m.eq(
            "10m median_fee = exact median of the ledger's fees",
            bucket,
            exact_median([t.fee for t in ledger]),
            median_fee_10m,
        )
        if len(heights) == 1:
            singles += 1
            core = stats[0]
            if core["txs"] > 1:
                m.eq(
                    "medianfee = trunc(median_fee_sat_10m), one-block bucket",
                    bucket,
                    core["medianfee"],
                    trunc(median_fee_10m),
                )
            else:  # definitional: Core reports 0 for a block without transactions, MQNODE NULL (undefined)
                m.eq(
                    "medianfee of an empty block: Core 0, MQNODE NULL",
                    bucket,
                    (0, None),
                    (core["medianfee"], median_fee_10m),
                )
        elif heights:
            multi += 1
        else:
            empty += 1
    assert singles > 200 and multi >= 5 and empty >= 5, (singles, multi, empty)
    return m
