"""sim-node: a local process that answers Bitcoin Core's JSON-RPC with Core's response shapes.

Fed from recorded getblock JSON (--blocks-dir), raw mainnet blocks (--raw-blocks) or a deterministic
synthetic chain (--synthetic); it can mine live and inject reorgs. Tests, benchmarks and the demo use it.
"""
