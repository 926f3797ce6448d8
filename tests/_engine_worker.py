"""Runs a SyncEngine drain in a child process for the crash tests.

argv: store path, central URL, batch size, pause seconds after each central commit.
Prints "committed <n>" after each batch's central commit (before the device acknowledges).
"""

import sys
import time

from invoicekit.sync import SyncEngine


def main() -> None:
    path, url, batch, pause = sys.argv[1], sys.argv[2], int(sys.argv[3]), float(sys.argv[4])
    count = 0

    def committed(_frame):
        nonlocal count
        count += 1
        print(f"committed {count}", flush=True)
        time.sleep(pause)

    print("start", flush=True)
    SyncEngine(path, url, batch_size=batch, on_batch_committed=committed).drain()
    print("done", flush=True)


if __name__ == "__main__":
    main()
