#!/usr/bin/env python3
"""A minimal HTTP proxy for chroots in their own network namespace.

  egress_proxy.py serve SOCK          on the host: an HTTP proxy (absolute-URI
                                      requests and CONNECT) on unix socket SOCK
  egress_proxy.py forward HOST:PORT SOCK
                                      in the namespace: TCP HOST:PORT -> SOCK

A pathname unix socket is reachable from any network namespace, so the pair
gives a namespace with only its own lo the Debian archive and the npm
registry (apt and npm are pointed at HOST:PORT), and nothing else listens on
its ports.  Used by test/lib/chroot.sh (PRESENCE_CHROOT_PROXY=1).
"""
import asyncio
import os
import sys


async def pipe(reader, writer):
    try:
        while True:
            data = await reader.read(65536)
            if not data:
                break
            writer.write(data)
            await writer.drain()
    except (ConnectionError, OSError):
        pass
    finally:
        try:
            writer.close()
        except Exception:
            pass


async def splice(r1, w1, r2, w2):
    await asyncio.gather(pipe(r1, w2), pipe(r2, w1))


async def handle_proxy(reader, writer):
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except (asyncio.IncompleteReadError, asyncio.LimitOverrunError):
        writer.close()
        return
    lines = head.decode("latin-1").split("\r\n")
    method, target, version = lines[0].split(" ", 2)
    try:
        if method == "CONNECT":
            host, port = target.rsplit(":", 1)
            ur, uw = await asyncio.open_connection(host, int(port))
            writer.write(b"HTTP/1.1 200 Connection established\r\n\r\n")
            await writer.drain()
        else:
            if not target.startswith("http://"):
                raise ValueError("not an absolute http URI: " + target)
            rest = target[len("http://"):]
            hostport, _, path = rest.partition("/")
            host, _, port = hostport.partition(":")
            ur, uw = await asyncio.open_connection(host, int(port or 80))
            headers = [h for h in lines[1:] if h and not h.lower().startswith(
                ("connection:", "proxy-connection:", "keep-alive:"))]
            # One request per connection: the client opens a new one.
            req = "\r\n".join([f"{method} /{path} {version}"] + headers +
                              ["Connection: close", "", ""])
            uw.write(req.encode("latin-1"))
            await uw.drain()
    except (OSError, ValueError) as e:
        writer.write(f"HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\n"
                     f"X-Error: {e}\r\nConnection: close\r\n\r\n".encode())
        await writer.drain()
        writer.close()
        return
    await splice(reader, writer, ur, uw)


async def handle_forward(sock, reader, writer):
    try:
        ur, uw = await asyncio.open_unix_connection(sock)
    except OSError:
        writer.close()
        return
    await splice(reader, writer, ur, uw)


async def main():
    if sys.argv[1] == "serve":
        sock = sys.argv[2]
        server = await asyncio.start_unix_server(handle_proxy, sock, limit=1 << 20)
        os.chmod(sock, 0o600)
    elif sys.argv[1] == "forward":
        host, port = sys.argv[2].rsplit(":", 1)
        sock = sys.argv[3]
        server = await asyncio.start_server(
            lambda r, w: handle_forward(sock, r, w), host, int(port))
    else:
        sys.exit(__doc__)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    try:
        asyncio.run(main())
    except KeyboardInterrupt:
        pass
