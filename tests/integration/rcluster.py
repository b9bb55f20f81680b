"""A tiny Redis Cluster client for tests (standard library only): hash
slots (CRC16, hash tags), the slot map from CLUSTER SLOTS, MOVED and ASK
redirections, retries on TRYAGAIN / CLUSTERDOWN / lost connections."""

import time

from resp import Client, RedisError


def _crc16_table():
    t = []
    for i in range(256):
        c = i << 8
        for _ in range(8):
            c = ((c << 1) ^ 0x1021) if c & 0x8000 else c << 1
        t.append(c & 0xFFFF)
    return t


_T = _crc16_table()


def crc16(data):
    c = 0
    for b in data:
        c = ((c << 8) & 0xFFFF) ^ _T[((c >> 8) ^ b) & 0xFF]
    return c


def key_slot(key):
    k = key.encode() if isinstance(key, str) else key
    s = k.find(b"{")
    if s >= 0:
        e = k.find(b"}", s + 1)
        if e > s + 1:
            k = k[s + 1:e]
    return crc16(k) % 16384


class ClusterClient:
    """Follows MOVED and ASK like a cluster-aware client does."""

    def __init__(self, seeds, password=None, timeout=2.0):
        self.seeds = list(seeds)          # [(host, port)]
        self.password = password
        self.timeout = timeout
        self.conns = {}
        self.slots = [None] * 16384
        self.redirects = {"MOVED": 0, "ASK": 0}
        self.refresh()

    def close(self):
        for c in self.conns.values():
            try:
                c.close()
            except OSError:
                pass
        self.conns = {}

    def conn(self, addr):
        c = self.conns.get(addr)
        if c is None:
            c = Client(host=addr[0], port=addr[1], password=self.password,
                       timeout=self.timeout)
            self.conns[addr] = c
        return c

    def drop(self, addr):
        c = self.conns.pop(addr, None)
        if c is not None:
            try:
                c.close()
            except OSError:
                pass

    def refresh(self):
        addrs = [a for a in self.slots if a] + self.seeds
        for addr in dict.fromkeys(addrs):
            try:
                rows = self.conn(addr).call("CLUSTER", "SLOTS")
            except (OSError, ConnectionError, RedisError):
                self.drop(addr)
                continue
            for r in rows:
                a = (r[2][0] or addr[0], int(r[2][1]))
                for s in range(int(r[0]), int(r[1]) + 1):
                    self.slots[s] = a
            return True
        return False

    def call(self, *args, key=None, deadline_s=20):
        key = args[1] if key is None else key
        slot = key_slot(key)
        end = time.monotonic() + deadline_s
        ask = None
        while True:
            addr = ask or self.slots[slot] or self.seeds[0]
            try:
                c = self.conn(addr)
                if ask:
                    c.call("ASKING")
                return c.call(*args)
            except RedisError as e:
                msg = str(e)
                word = msg.split(" ", 1)[0]
                if word in ("MOVED", "ASK"):
                    self.redirects[word] += 1
                    _, _, where = msg.split(" ")
                    host, port = where.rsplit(":", 1)
                    a = (host, int(port))
                    if word == "MOVED":
                        self.slots[slot] = a
                        ask = None
                    else:
                        ask = a
                    continue
                if word not in ("TRYAGAIN", "CLUSTERDOWN", "LOADING") or \
                        time.monotonic() > end:
                    raise
            except (OSError, ConnectionError):
                self.drop(addr)
                if time.monotonic() > end:
                    raise
                self.refresh()
            ask = None
            time.sleep(0.05)

    def pipeline_set(self, items):
        """SET many keys, pipelined per node; falls back to call() on any
        redirection or error."""
        by = {}
        for k, v in items:
            by.setdefault(self.slots[key_slot(k)] or self.seeds[0],
                          []).append((k, v))
        for addr, kvs in by.items():
            retry = []
            try:
                c = self.conn(addr)
                for k, v in kvs:
                    c.send("SET", k, v)
                for k, v in kvs:
                    try:
                        c._reply()
                    except RedisError:
                        retry.append((k, v))
            except (OSError, ConnectionError):
                self.drop(addr)
                retry = kvs
            for k, v in retry:
                self.call("SET", k, v)
