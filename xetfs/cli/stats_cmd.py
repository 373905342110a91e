"""Print the counters of a running xetfs mount as one JSON object.

Example:
  xetfs stats /mnt/model

The mount daemon serves its counters through the hidden file MOUNTPOINT/.xetfs-stats (not listed by ls;
read fresh at every open): bytes read by applications (bytes_read), bytes fetched from the network
(bytes_fetched), cache hits/misses per tier, reconstructions, fetches, retries, integrity failures, read
errors and pending work. ``open_files`` lists each open file: path, handles, bytes_read (by its handles),
bytes_fetched (for it), whole_file_streams, and the readahead's ``decisions`` (reads fetched sequential,
tensor_aligned, column_aligned or exact). A writable mount adds ``write``: pending_files / pending_bytes (closed files not yet
committed), uploaded_bytes (xorb bytes sent), new_bytes, deduplicated_bytes, commits, last_commit, uploading,
upload_errors / last_error, staging_bytes, conflicts (paths kept staged because the branch changed them
too), failed (paths the Hub refused for good, with the reason; saving the file again retries it) and
already_committed (resumed changes the branch already held). ``endpoints`` shows the configured nodes, their
health and latency, how many requests failed over, and how many request attempts were retried (retries).
The cache tiers count evictions too. `xetfs mount --metrics-addr` serves the same counters to Prometheus. ``commit`` is the commit the mount shows; a mount that
follows its branch adds ``follow``: poll_interval_s, last_checked (UTC), checks, failures / last_error,
changes / last_change (new heads swapped in), waiting_head (a writable mount with pending changes).
``link`` says whether the server is reachable: state (online; offline: started from the cache without the
server; degraded: lost it while mounted) and since when (since_unix_s), failures_in_row, degraded_switches,
reconnects, probes and last_error. Exit codes: 0 ok, 1 not a xetfs mount.
"""
from __future__ import annotations

import argparse
import json

HELP = "print the counters of a running mount as JSON"


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("mountpoint", metavar="MOUNTPOINT")


def run(args: argparse.Namespace) -> int:
    from xetfs.fs.stats import read_stats

    print(json.dumps(read_stats(args.mountpoint), indent=2, sort_keys=True))
    return 0
