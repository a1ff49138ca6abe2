#!/usr/bin/env python3
"""A small anonchat bot: answers "ping" with "pong".

Standard library only. It talks to your anonchatd over its local socket:
JSON-RPC 2.0, one JSON object per line (newline-delimited, as anonctl and
the window do; see docs/rpc.md). It subscribes to `events.subscribe` and
keeps the `stream` and `seq` of the last event it handled, so that

* when the connection drops (the daemon restarts), it reconnects and asks
  for the events after that one: nothing that arrived in between is lost;
* with --state FILE, the same holds across restarts of the bot itself.

A daemon restart starts a new stream (sequence numbers start again): the
daemon refuses the old position with error -32015 and says where the new
stream stands; the bot then reads the new stream from its start. If the
daemon no longer holds what the bot missed (-32014, more than 1,000 events,
or the daemon was locked), the bot says so and goes on from the oldest
event held.

    python3 examples/pingbot.py --socket "$XDG_RUNTIME_DIR/anonchatd.sock" \\
        --state ~/.local/state/pingbot.json

It prints what it does on stderr, without names or message text.
"""

import argparse
import json
import os
import signal
import socket
import struct
import sys
import time

MAX_LINE = 256 * 1024  # the daemon's own limit (anonchat_ipc::MAX_LINE)
EVENTS_TOO_OLD = -32014
UNKNOWN_EVENT_STREAM = -32015


def log(*words):
    print("pingbot:", *words, file=sys.stderr, flush=True)


class Lost(Exception):
    """The connection to the daemon is gone."""


class Daemon:
    """One connection: requests out, lines in."""

    def __init__(self, path):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.connect(path)
        # Like anonctl: talk only to a daemon of our own user.
        creds = self.sock.getsockopt(
            socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i")
        )
        _pid, uid, _gid = struct.unpack("3i", creds)
        if uid != os.geteuid():
            self.sock.close()
            raise SystemExit(
                f"pingbot: {path} is served by uid {uid}, not by you; refusing to talk to it"
            )
        self.buf = b""
        self.next_id = 1

    def request(self, method, params):
        rid = self.next_id
        self.next_id += 1
        line = json.dumps(
            {"jsonrpc": "2.0", "id": rid, "method": method, "params": params}
        )
        try:
            self.sock.sendall(line.encode() + b"\n")
        except OSError as e:
            raise Lost(e) from e
        return rid

    def read(self):
        """The next JSON object the daemon sends."""
        while b"\n" not in self.buf:
            if len(self.buf) > MAX_LINE:
                raise Lost("the daemon sent an over-long line")
            try:
                chunk = self.sock.recv(65536)
            except OSError as e:
                raise Lost(e) from e
            if not chunk:
                raise Lost("the daemon closed the connection")
            self.buf += chunk
        line, self.buf = self.buf.split(b"\n", 1)
        return json.loads(line)

    def close(self):
        self.sock.close()


class Position:
    """The last event handled (stream id and sequence number), optionally
    kept in a file so that a restarted bot goes on where it stopped."""

    def __init__(self, path):
        self.path = path
        self.stream, self.seq = None, None
        if path and os.path.exists(path):
            with open(path, encoding="utf-8") as f:
                saved = json.load(f)
            self.stream, self.seq = saved["stream"], saved["seq"]

    def set(self, stream, seq):
        self.stream, self.seq = stream, seq
        if self.path:
            tmp = self.path + ".tmp"
            with open(tmp, "w", encoding="utf-8") as f:
                json.dump({"stream": stream, "seq": seq}, f)
            os.replace(tmp, self.path)


def subscribe(daemon, pos):
    """Subscribes from `pos` (or from now); returns the subscription id,
    moving `pos` when the daemon says the position cannot be served."""
    if pos.stream is None:
        # First run: start from the daemon's newest event, and remember
        # it at once (a restart before the first event loses nothing).
        rid = daemon.request("events.position", {})
        while (msg := daemon.read()).get("id") != rid:
            pass
        if "error" in msg:
            raise SystemExit(f"pingbot: events.position failed: {msg['error']['message']}")
        pos.set(msg["result"]["stream"], msg["result"]["last"])
    while True:
        params = {"since": pos.seq, "stream": pos.stream}
        rid = daemon.request("events.subscribe", params)
        early = []  # notifications read before the answer (kept, in order)
        while True:
            msg = daemon.read()
            if msg.get("id") == rid:
                break
            if msg.get("method") == "events.event":
                early.append(msg)
        if "result" in msg:
            log(f"subscribed after event {pos.seq}")
            return msg["result"], early
        err = msg["error"]
        data = err.get("data") or {}
        if err["code"] == UNKNOWN_EVENT_STREAM:
            # The daemon restarted: read its new stream from the start.
            if data["oldest"] > 1:
                log(f"the daemon restarted and no longer holds {data['oldest'] - 1} events")
            else:
                log("the daemon restarted; reading its new event stream from the start")
            pos.set(data["stream"], data["oldest"] - 1)
        elif err["code"] == EVENTS_TOO_OLD:
            log(f"missed events {pos.seq + 1}..{data['oldest'] - 1}: the daemon no longer holds them")
            pos.set(data["stream"], data["oldest"] - 1)
        else:
            raise SystemExit(f"pingbot: events.subscribe failed: {err['message']}")


def serve(daemon, pos, reply):
    sub, early = subscribe(daemon, pos)
    while True:
        msg = early.pop(0) if early else daemon.read()
        if msg.get("method") != "events.event":
            if "error" in msg:  # an answer to messages.send
                log("a reply was not sent:", msg["error"]["message"])
            continue
        params = msg["params"]
        if params.get("subscription") != sub:
            continue
        event = params["result"]
        if event["type"] == "message_received" and event["text"].strip().lower() == "ping":
            daemon.request("messages.send", {"to": event["contact"], "text": reply})
            log(f"answered a ping (event {event['seq']})")
        elif event["type"] == "lagged":
            log(f"missed {event['missed']} events (the bot fell behind)")
        # Handled: a restart goes on after this one.
        pos.set(event["stream"], event["seq"])


def default_socket():
    run = os.environ.get("XDG_RUNTIME_DIR")
    if run:
        return os.path.join(run, "anonchatd.sock")
    return os.path.expanduser("~/.local/share/anonchat/anonchatd.sock")


def main():
    parser = argparse.ArgumentParser(description='Answers "ping" with "pong".')
    parser.add_argument("--socket", default=default_socket(), help="the daemon's socket")
    parser.add_argument("--state", help="file keeping the last event handled, across bot restarts")
    parser.add_argument("--reply", default="pong", help="what to answer")
    args = parser.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))

    pos = Position(args.state)
    delay = 0.2
    while True:
        try:
            daemon = Daemon(args.socket)
        except OSError as e:
            # No daemon (yet, or restarting): try again, backing off to 5 s.
            log(f"cannot connect ({e.strerror}); retrying")
            time.sleep(delay)
            delay = min(delay * 2, 5.0)
            continue
        delay = 0.2
        try:
            serve(daemon, pos, args.reply)
        except Lost as e:
            log(f"lost the daemon ({e}); reconnecting")
        finally:
            daemon.close()


if __name__ == "__main__":
    main()
