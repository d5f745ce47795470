"""Bitcoin Core getblock (verbosity 2 or 3) JSON -> rows of raw.btc_blocks_raw, raw.btc_tx_raw and
raw.btc_prevout_stage.

Mapping only: amounts become integer satoshis through Decimal, times become UTC datetimes, shapes are
checked. Sums over a block, fee fallbacks, supply and the UTXO / coin-age facts are computed in SQL
(sql/functions). Per transaction the outputs that enter the UTXO set are counted (Bitcoin Core's
IsUnspendable: a script starting with OP_RETURN or longer than 10,000 bytes never does); per non-coinbase
input the prevout that verbosity 3 reports becomes one stage row (verbosity 2 has none: SQL then records
the block's prevouts as unknown; the stage rows' contract is in docs/benchmarks.md, "Prevout resolution
inside MQNODE").
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import Any

SATOSHIS_PER_BTC = Decimal(100_000_000)

BLOCK_COLUMNS = (
    "height",
    "block_hash",
    "previous_block_hash",
    "block_time",
    "median_time",
    "tx_count",
    "size",
    "stripped_size",
    "weight",
    "difficulty",
    "chainwork",
    "version",
    "merkle_root",
    "bits",
    "nonce",
)
TX_COLUMNS = (
    "height",
    "tx_index",
    "txid",
    "size",
    "vsize",
    "weight",
    "is_coinbase",
    "is_segwit",
    "input_count",
    "output_count",
    "output_value_sat",
    "fee_sat",
    "utxo_output_count",
    "utxo_output_value_sat",
    "utxo_output_script_bytes",
)
PREVOUT_COLUMNS = ("spend_height", "created_height", "value_sat", "script_bytes", "is_coinbase")
MAX_SCRIPT_SIZE = 10_000  # Core's MAX_SCRIPT_SIZE: longer scripts are unspendable


class MalformedBlockError(ValueError):
    """A getblock response that cannot be mapped; names the block and the field."""


@dataclass(frozen=True)
class MappedBlock:
    """One block as rows: a raw.btc_blocks_raw tuple, its raw.btc_tx_raw tuples and its prevout stage rows."""

    height: int
    block_hash: str
    previous_block_hash: str | None
    block_row: tuple
    tx_rows: list[tuple]
    prevout_rows: list[tuple] = field(default_factory=list)


def btc_to_sat(value: Any, where: str) -> int:
    """Exact BTC amount (Decimal, int or numeric string) -> satoshis; floats go through their repr."""
    if isinstance(value, bool) or value is None:
        raise MalformedBlockError(f"{where}: amount missing or not a number ({value!r})")
    try:
        amount = value if isinstance(value, Decimal) else Decimal(str(value))
        sats = amount * SATOSHIS_PER_BTC
    except (InvalidOperation, ValueError) as exc:
        raise MalformedBlockError(f"{where}: amount {value!r} is not a number") from exc
    if not sats.is_finite() or sats != sats.to_integral_value():
        raise MalformedBlockError(f"{where}: amount {value!r} is not a whole number of satoshis")
    if sats < 0:
        raise MalformedBlockError(f"{where}: negative amount {value!r}")
    return int(sats)


def _require(obj: dict, key: str, kind: type | tuple[type, ...], where: str) -> Any:
    if not isinstance(obj, dict):
        raise MalformedBlockError(f"{where}: expected an object, got {type(obj).__name__}")
    if key not in obj:
        raise MalformedBlockError(f"{where}: field '{key}' missing")
    value = obj[key]
    if not isinstance(value, kind) or isinstance(value, bool) and kind is not bool:
        raise MalformedBlockError(f"{where}: field '{key}' has type {type(value).__name__}")
    return value


def _optional_int(obj: dict, key: str, where: str) -> int | None:
    value = obj.get(key)
    if value is None:
        return None
    if not isinstance(value, int) or isinstance(value, bool):
        raise MalformedBlockError(f"{where}: field '{key}' has type {type(value).__name__}")
    return value


def _utc(seconds: int) -> datetime:
    return datetime.fromtimestamp(seconds, UTC)


def _txid_bytes(txid: str, where: str) -> bytes:
    """The txid as the 32 bytes raw.btc_tx_raw stores (the order Core prints: encode(txid, 'hex') gives it back)."""
    try:
        raw = bytes.fromhex(txid)
    except ValueError:
        raw = b""
    if len(raw) != 32:
        raise MalformedBlockError(f"{where}: field 'txid' is not 64 hex characters")
    return raw


def _checked_tx_row(tx: Any, index: int, height: int, where: str) -> tuple:
    """One transaction row with every field checked; raises MalformedBlockError naming the field."""
    tx_where = f"{where} tx {index}"
    vin = _require(tx, "vin", list, tx_where)
    vout = _require(tx, "vout", list, tx_where)
    if not vin:
        raise MalformedBlockError(f"{tx_where}: field 'vin' is empty")
    is_coinbase = isinstance(vin[0], dict) and "coinbase" in vin[0]
    if is_coinbase != (index == 0):
        raise MalformedBlockError(
            f"{tx_where}: coinbase input {'at' if is_coinbase else 'missing from'} position {index}"
        )
    output_value = 0
    utxo_count = utxo_value = utxo_script_bytes = 0
    for n, out in enumerate(vout):
        if not isinstance(out, dict) or "value" not in out:
            raise MalformedBlockError(f"{tx_where} vout {n}: field 'value' missing")
        value = btc_to_sat(out["value"], f"{tx_where} vout {n}")
        output_value += value
        spk = _require(out, "scriptPubKey", dict, f"{tx_where} vout {n}")
        script = _require(spk, "hex", str, f"{tx_where} vout {n} scriptPubKey")
        if not _is_unspendable(script):
            utxo_count += 1
            utxo_value += value
            utxo_script_bytes += len(script) // 2
    fee = tx.get("fee")
    fee_sat = None if is_coinbase or fee is None else btc_to_sat(fee, f"{tx_where} fee")
    return (
        height,
        index,
        _txid_bytes(_require(tx, "txid", str, tx_where), tx_where),
        _require(tx, "size", int, tx_where),
        _optional_int(tx, "vsize", tx_where),
        _optional_int(tx, "weight", tx_where),
        is_coinbase,
        any(isinstance(inp, dict) and inp.get("txinwitness") for inp in vin),
        len(vin),
        len(vout),
        output_value,
        fee_sat,
        utxo_count,
        utxo_value,
        utxo_script_bytes,
    )


def _is_unspendable(script_hex: str) -> bool:
    """Core's CScript::IsUnspendable: OP_RETURN first, or longer than MAX_SCRIPT_SIZE bytes."""
    return script_hex[:2] == "6a" or len(script_hex) > 2 * MAX_SCRIPT_SIZE


def _prevout_rows(tx: dict, height: int, where: str, append) -> None:
    """Stage rows of a non-coinbase transaction's inputs that carry a prevout (getblock verbosity 3)."""
    for k, inp in enumerate(tx["vin"]):
        prevout = inp.get("prevout") if isinstance(inp, dict) else None
        if prevout is None:
            continue
        in_where = f"{where} vin {k} prevout"
        created = _require(prevout, "height", int, in_where)
        generated = _require(prevout, "generated", bool, in_where)
        script = _require(_require(prevout, "scriptPubKey", dict, in_where), "hex", str, f"{in_where} scriptPubKey")
        if created < 0 or created > height:
            raise MalformedBlockError(f"{in_where}: field 'height' {created} is not at or below block {height}")
        append((height, created, btc_to_sat(prevout.get("value"), in_where), len(script) // 2, generated))


def map_block(block: Any) -> MappedBlock:
    """Map one getblock verbosity 2/3 result; raises MalformedBlockError naming block and field."""
    if not isinstance(block, dict):
        raise MalformedBlockError(f"getblock result is {type(block).__name__}, expected an object")
    height = _require(block, "height", int, "block")
    block_hash = _require(block, "hash", str, f"block {height}")
    where = f"block {height} ({block_hash})"
    if len(block_hash) != 64:
        raise MalformedBlockError(f"{where}: field 'hash' is not 64 hex characters")
    previous = block.get("previousblockhash")
    if previous is None and height != 0:
        raise MalformedBlockError(f"{where}: field 'previousblockhash' missing")
    txs = _require(block, "tx", list, where)
    if not txs:
        raise MalformedBlockError(f"{where}: field 'tx' is empty")
    if not isinstance(txs[0], dict):
        raise MalformedBlockError(f"{where}: field 'tx' holds txids only; call getblock with verbosity 2 or 3")
    block_time_s = _require(block, "time", int, where)
    median_time_s = _optional_int(block, "mediantime", where)
    difficulty = _require(block, "difficulty", (Decimal, int, float), where)
    n_tx = block.get("nTx", len(txs))
    if n_tx != len(txs):
        raise MalformedBlockError(f"{where}: nTx {n_tx} but {len(txs)} transactions")

    tx_rows: list[tuple] = []
    append = tx_rows.append
    prevout_rows: list[tuple] = []
    append_prevout = prevout_rows.append
    for index, tx in enumerate(txs):
        # Fast path over well-formed JSON; anything unexpected is re-checked field by field for the message.
        try:
            vin = tx["vin"]
            vout = tx["vout"]
            is_coinbase = "coinbase" in vin[0]
            values = [out["value"] for out in vout]
            total = sum(values, Decimal(0))
            scripts = [out["scriptPubKey"]["hex"] for out in vout]
            kept = [(v, sc) for v, sc in zip(values, scripts, strict=True) if not _is_unspendable(sc)]
            kept_total = sum((v for v, _ in kept), Decimal(0))
            fee = None if is_coinbase else tx.get("fee")
            row = (
                height,
                index,
                bytes.fromhex(tx["txid"]),
                tx["size"],
                tx.get("vsize"),
                tx.get("weight"),
                is_coinbase,
                any(inp.get("txinwitness") for inp in vin),
                len(vin),
                len(vout),
                int(total_sat := total.scaleb(8)),
                None if fee is None else int(fee_sat := fee.scaleb(8)),
                len(kept),
                int(kept_total.scaleb(8)),
                sum(len(sc) for _, sc in kept) // 2,
            )
            if (
                type(total) is not Decimal
                or type(kept_total) is not Decimal
                or any(type(sc) is not str for sc in scripts)
                or row[10] != total_sat  # not a whole number of satoshis
                or (values and min(values) < 0)
                or (fee is not None and (type(fee) is not Decimal or row[11] != fee_sat or fee < 0))
                or is_coinbase != (index == 0)
                or len(row[2]) != 32
                or type(row[3]) is not int
                or (row[4] is not None and type(row[4]) is not int)
                or (row[5] is not None and type(row[5]) is not int)
            ):
                raise ValueError
        except (KeyError, TypeError, ValueError, AttributeError, IndexError, ArithmeticError):
            row = _checked_tx_row(tx, index, height, where)
        append(row)
        if index:
            _prevout_rows(tx, height, f"{where} tx {index}", append_prevout)

    block_row = (
        height,
        block_hash,
        previous,
        _utc(block_time_s),
        _utc(median_time_s) if median_time_s is not None else None,
        len(txs),
        _require(block, "size", int, where),
        _optional_int(block, "strippedsize", where),
        _optional_int(block, "weight", where),
        difficulty if isinstance(difficulty, Decimal) else Decimal(str(difficulty)),
        _require(block, "chainwork", str, where),
        _require(block, "version", int, where),
        _require(block, "merkleroot", str, where),
        _require(block, "bits", str, where),
        _require(block, "nonce", int, where),
    )
    return MappedBlock(height, block_hash, previous, block_row, tx_rows, prevout_rows)
