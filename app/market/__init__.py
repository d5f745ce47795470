"""Price lane: venue candle parsers and fetchers; the 10m venue rows and the canonical price are built in SQL."""
