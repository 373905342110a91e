"""The sans-IO core: bytes in, values out. No trio, httpx, pyfuse3, sockets, files, clocks or randomness."""
