#!/usr/bin/env python3
"""Asks a Kafka broker for its API versions over the Kafka protocol.

Exit 0 when the broker answers with error code 0: it accepts requests. Used by
ops/kafka to decide that a started broker is ready (an open port is not enough:
a KRaft broker listens before it has joined its quorum).
"""
import socket
import struct
import sys


def api_versions(host: str, port: int, timeout: float) -> int:
    client_id = b"rapport-probe"
    # ApiVersions (key 18) version 0, correlation id 1, request header v1.
    body = struct.pack(">hhih", 18, 0, 1, len(client_id)) + client_id
    with socket.create_connection((host, port), timeout=timeout) as sock:
        sock.settimeout(timeout)
        sock.sendall(struct.pack(">i", len(body)) + body)
        header = sock.recv(4, socket.MSG_WAITALL)
        if len(header) < 4:
            raise ConnectionError("connection closed before a response")
        (size,) = struct.unpack(">i", header)
        payload = sock.recv(size, socket.MSG_WAITALL)
    correlation_id, error_code = struct.unpack(">ih", payload[:6])
    if correlation_id != 1:
        raise ConnectionError(f"unexpected correlation id {correlation_id}")
    return error_code


def main() -> int:
    address = sys.argv[1] if len(sys.argv) > 1 else "127.0.0.1:9092"
    host, _, port = address.rpartition(":")
    try:
        code = api_versions(host, int(port), 2.0)
    except (OSError, ValueError) as e:
        print(f"no Kafka answer from {address}: {e}", file=sys.stderr)
        return 1
    if code != 0:
        print(f"Kafka at {address} answered ApiVersions with error {code}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
