"""A reader process for tests/test_cache.py: reads one invoice through the cache in a loop
and prints, as JSON, the versions it saw after the writer's marker file appeared (it reads
until it has ``rounds`` of those, or for 60 s)."""

import json
import os
import sys
import time

import invoicekit as ik


def main() -> None:
    store, invoice_id, redis_url, namespace, marker, rounds = sys.argv[1:7]
    cache = ik.Cache(redis_url, namespace=namespace)
    after, deadline = [], time.monotonic() + 60
    while len(after) < int(rounds) and time.monotonic() < deadline:  # read before and after the write
        wrote = os.path.exists(marker)
        version = int(ik.get_invoice(store, invoice_id, cache=cache).invoices["version"].iloc[0])
        if wrote:
            after.append(version)
    print(json.dumps(after))


if __name__ == "__main__":
    main()
