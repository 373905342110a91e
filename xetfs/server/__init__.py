"""xetfs serve: a Xet CAS plus the Hub repo API (aiohttp), over pluggable storage and metadata."""
