"""httpx-sse as a peer client: prints one JSON line per item httpx-sse yields
({type, data, lastEventId, retry}) until killed. httpx-sse only parses; reconnection with
Last-Event-ID (and honouring retry:) is done here, as its README suggests.

Usage: python3 httpx_sse_client.py URL
"""
import json
import sys
import time

import httpx
from httpx_sse import connect_sse


def main() -> None:
    url = sys.argv[1]
    last_id = ""
    delay = 3.0
    with httpx.Client(timeout=httpx.Timeout(30.0)) as client:
        while True:
            headers = {"Accept": "text/event-stream", "Cache-Control": "no-cache"}
            if last_id:
                headers["Last-Event-ID"] = last_id
            with connect_sse(client, "GET", url, headers=headers) as source:
                if source.response.status_code == 204:
                    return
                source.response.raise_for_status()
                print("open", file=sys.stderr, flush=True)
                for sse in source.iter_sse():
                    if sse.retry is not None:
                        delay = sse.retry / 1000
                    last_id = sse.id
                    # Everything httpx-sse yields is printed (retry included), so the Rust test can
                    # name its deviations instead of this script hiding them.
                    print(json.dumps({"type": sse.event, "data": sse.data, "lastEventId": sse.id, "retry": sse.retry}), flush=True)
            print(f"stream ended; reconnecting in {delay}s with Last-Event-ID {last_id!r}", file=sys.stderr, flush=True)
            time.sleep(delay)


if __name__ == "__main__":
    main()
