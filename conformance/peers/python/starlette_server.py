"""sse-starlette as a peer server for our client. GET /events streams three events after the
Last-Event-ID it is given (ids are integers), then ends the response so the client must reconnect;
GET /seen lists the Last-Event-ID header of every /events request (null when absent).

Prints the port it listens on (127.0.0.1, ephemeral) on the first line of stdout.
"""
import socket
import sys

import uvicorn
from sse_starlette.sse import EventSourceResponse, ServerSentEvent
from starlette.applications import Starlette
from starlette.responses import JSONResponse
from starlette.routing import Route

seen = []


async def events(request):
    last = request.headers.get("last-event-id")
    seen.append(last)
    start = int(last) if last else 0

    async def stream():
        for n in range(start + 1, start + 4):
            yield ServerSentEvent(
                id=str(n),
                event="tick" if n % 2 == 0 else None,
                data=f"event {n}\nsecond line",
                retry=100 if n == start + 1 else None,
            )

    return EventSourceResponse(stream(), ping=60)


async def seen_ids(request):
    return JSONResponse(seen)


app = Starlette(routes=[Route("/events", events), Route("/seen", seen_ids)])

if __name__ == "__main__":
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    sock.listen(128)  # connections queue from now on, before uvicorn starts serving
    print(sock.getsockname()[1], flush=True)
    uvicorn.Server(uvicorn.Config(app, log_level="warning")).run(sockets=[sock])
    sys.exit(0)
