#!/usr/bin/python3
"""python3-websockets peer of the Duplex interop tests (Debian's package, 10.4).

Usage: /usr/bin/python3 python/client.py ws://127.0.0.1:PORT

Runs every case as a client of the Go test's server (our websocket.Open echo
handler) and prints one JSON line per case with what it observed; the Go test
(scripts_test.go) makes the assertions. Exit status: 0 when every case ran
without error, 1 when some case reported an error, 2 on a crash.

Case names and the server protocol are those of common_test.go:
  ?mode=echo|stream&case=NAME, "#cmd ping", "#cmd close CODE REASON".
"""

import asyncio
import hashlib
import json
import sys

import websockets
from websockets.exceptions import ConnectionClosed

SIZES = [0, 1, 125, 126, 65535, 65536, 1 << 20, 16 << 20]
KINDS = ["text", "binary"]
MODES = ["whole", "peer-frag", "our-frag"]
# plain: no permessage-deflate offered; deflate: offered (websockets' default)
COMPRESSIONS = ["plain", "deflate"]
CLOSE_CODES = [1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 1012, 1013, 1014, 3000, 4999]
OP_TIMEOUT = 60  # seconds, one case
MAX_SIZE = 32 << 20  # the peer's read limit, above the largest message

ALPHABET = list("abcdefghijklmnopqrstuvwxyz01234567 ") + ["é", "ß", "€", "漢", "😀", "𝄞", "ж"]
_TEXT_BLOCK = "".join(ALPHABET[(i * 7 + i // 5) % len(ALPHABET)] for i in range(1500)).encode()
_BIN_BLOCK = bytes((i * 131 + i // 256) & 0xFF for i in range(4093))


def close_reason(code):
    return f"reason {code} ✓"


def payload(kind, n):
    """n bytes: binary covers all byte values, text is valid UTF-8 with 1-4 byte sequences."""
    if kind == "binary":
        return (_BIN_BLOCK * (n // len(_BIN_BLOCK) + 1))[:n]
    raw = (_TEXT_BLOCK * (n // len(_TEXT_BLOCK) + 1))[:n]
    text = raw.decode("utf-8", errors="ignore")  # drops a cut sequence at the end
    return text + "." * (n - len(text.encode()))


def frag_chunk(n):
    return min(n // 3 + 1, 4093)


def fragments(data, chunk):
    # websockets sends an iterable as a fragmented message: one frame per item
    # (str items for text, bytes for binary), then an empty final frame.
    parts = [data[i : i + chunk] for i in range(0, len(data), chunk)]
    return parts or [data[:0]]


def sha(b):
    return hashlib.sha256(b).hexdigest()


async def connect(base, mode, case, comp="deflate"):
    return await websockets.connect(
        f"{base}/?mode={mode}&case={case}",
        compression="deflate" if comp == "deflate" else None,
        max_size=MAX_SIZE,
        ping_interval=None,  # no keepalive pings of its own
        close_timeout=10,
        open_timeout=OP_TIMEOUT,
    )


async def message_case(rec, base, comp, mode, kind, size):
    ws = await connect(base, "stream" if mode == "our-frag" else "echo", rec["case"], comp)
    try:
        data = payload(kind, size)
        raw = data.encode() if kind == "text" else data
        rec.update(sent_type=kind, sent_len=len(raw), sent_sha256=sha(raw))
        if mode == "peer-frag":
            await ws.send(fragments(data, frag_chunk(size)))
        else:
            await ws.send(data)
        got = await ws.recv()
        if isinstance(got, str):
            rec["recv_type"], got = "text", got.encode()
        else:
            rec["recv_type"] = "binary"
        rec.update(recv_len=len(got), recv_sha256=sha(got))
    finally:
        await ws.close()


async def ping_peer(rec, base):
    ws = await connect(base, "echo", "ping-peer")
    try:
        data = b"python-ping \x00\xff"
        rec["ping_hex"] = data.hex()
        waiter = await ws.ping(data)
        # websockets resolves this waiter only when a pong carrying exactly
        # this payload arrives (pongs with another payload are ignored).
        await waiter
        rec["pong_hex"] = data.hex()
        await ws.send("after-ping")
        rec["after"] = await ws.recv()
    finally:
        await ws.close()


async def ping_ours(rec, base):
    ws = await connect(base, "echo", "ping-ours")
    try:
        await ws.send("#cmd ping")
        rec["reply"] = await ws.recv()  # the pong is sent automatically
    finally:
        await ws.close()


async def close_peer(rec, base, code):
    ws = await connect(base, "echo", rec["case"])
    await ws.close(code, close_reason(code))
    rec["code"], rec["reason"] = ws.close_code, ws.close_reason  # from our echo


async def close_ours(rec, base, code):
    ws = await connect(base, "echo", rec["case"])
    try:
        await ws.send(f"#cmd close {code} {close_reason(code)}")
        try:
            msg = await ws.recv()
            rec["error"] = f"received {msg!r} instead of the close frame"
        except ConnectionClosed:
            pass
        await ws.wait_closed()
        rec["code"], rec["reason"] = ws.close_code, ws.close_reason
    finally:
        await ws.close()


async def run(name, fn, *args):
    rec = {"case": name}
    try:
        await asyncio.wait_for(fn(rec, *args), OP_TIMEOUT)
    except BaseException as e:  # noqa: BLE001 - every failure is reported
        if isinstance(e, (KeyboardInterrupt, SystemExit)):
            raise
        rec["error"] = f"{type(e).__name__}: {e!r}"
    print(json.dumps(rec), flush=True)
    return "error" not in rec


async def main(base):
    ok = True
    for comp in COMPRESSIONS:
        for mode in MODES:
            for kind in KINDS:
                for size in SIZES:
                    name = f"{mode}-{kind}-{size}" if comp == "plain" else f"{comp}-{mode}-{kind}-{size}"
                    ok &= await run(name, message_case, base, comp, mode, kind, size)
    ok &= await run("ping-peer", ping_peer, base)
    ok &= await run("ping-ours", ping_ours, base)
    for code in CLOSE_CODES:
        ok &= await run(f"close-peer-{code}", close_peer, base, code)
    for code in CLOSE_CODES:
        ok &= await run(f"close-ours-{code}", close_ours, base, code)
    return ok


if __name__ == "__main__":
    if len(sys.argv) != 2:
        print(__doc__, file=sys.stderr)
        sys.exit(2)
    print(f"python3-websockets {websockets.__version__}", flush=True)
    sys.exit(0 if asyncio.run(main(sys.argv[1])) else 1)
