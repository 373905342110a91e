"""Client of the Xet CAS API over httpx: reconstructions, data ranges, xorb and shard uploads, global dedup."""
