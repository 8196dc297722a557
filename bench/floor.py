"""
The floor of this stack: a bare Autobahn (Twisted) WebSocket server that only
parses each CALL and answers it with an empty CALLRESULT. The benchmarks run
every scenario against it and against the service, in the same run, and
report the service as a ratio of it.

    python3 bench/floor.py --port 8017 [--ping 10]

It prints "floor listening on PORT" once it accepts connections.
"""

import argparse
import json
import sys

from autobahn.twisted.websocket import WebSocketServerFactory, WebSocketServerProtocol
from twisted.internet import reactor


class FloorProtocol(WebSocketServerProtocol):
    def onConnect(self, request):
        return "ocpp1.6" if "ocpp1.6" in request.protocols else None

    def onMessage(self, payload, isBinary):
        frame = json.loads(payload.decode("utf-8"))
        if isinstance(frame, list) and len(frame) == 4 and frame[0] == 2:
            self.sendMessage(('[3,"%s",{}]' % frame[1]).encode("utf-8"), False)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--ping", type=int, default=0)
    args = parser.parse_args()
    factory = WebSocketServerFactory()
    factory.protocol = FloorProtocol
    # The same frame limits and ping settings as the service's factory.
    options = dict(maxFramePayloadSize=64 * 1024, maxMessagePayloadSize=64 * 1024,
                   perMessageCompressionAccept=lambda offers: None)
    if args.ping:
        options.update(autoPingInterval=args.ping, autoPingTimeout=max(10, args.ping // 2))
    factory.setProtocolOptions(**options)
    # The service's listen backlog (xxterocpp.early.LISTEN_BACKLOG): with
    # Twisted's default of 50 a storm measures SYN retransmits, not the floor.
    port = reactor.listenTCP(args.port, factory, interface="127.0.0.1", backlog=1024)
    print(f"floor listening on {port.getHost().port}", flush=True)
    reactor.run()


if __name__ == "__main__":
    sys.exit(main())
