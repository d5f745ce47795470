"""MQNODE: a self-owned Bitcoin data node whose computations live in SQL (sql/)."""
