"""Bitcoin lane: RPC client, loader (mapper + writer), listener, reorg handling, backfill."""
