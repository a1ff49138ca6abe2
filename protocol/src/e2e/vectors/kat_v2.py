#!/usr/bin/env python3
"""Known-answer vectors for anonchat's end-to-end key schedule, protocol v2.

A second implementation, independent of the Rust code: written from
docs/protocol.md ("End-to-end layer": handshake cells, session start,
Double Ratchet with header encryption, session cell) with nothing but
Python's hashlib/hmac and the `cryptography` package (X25519, HKDF-SHA256,
ChaCha20-Poly1305). It reads the fixed inputs of kat_v2.json (identity
secrets, ephemeral and ratchet key pairs, rounds, payloads, and the ML-KEM
values, which this script takes as given) and computes every expected
output: the INIT and ACCEPT bytes, the transcript hash and chaining key
after each, the Split outputs, the handshake cells, and for each session
cell its tag, header round key, message key and bytes, with both sides'
ratchet keys after every step. The Rust test `e2e::tests::kat` runs the
real code on the same inputs and checks every value.

  kat_v2.py --check    recompute and compare with kat_v2.json (exit 1 on
                       any difference)
  kat_v2.py --write    recompute and write the expected outputs into
                       kat_v2.json (the inputs are kept as they are)

Both also check the inputs against the identity fixtures they name (the
X25519 secrets and fingerprints parsed from the key files), and, where the
installed `cryptography` has ML-KEM (version 47 or later with OpenSSL 3.5
or later), that every ML-KEM shared secret is what decapsulating its
ciphertext gives. Without ML-KEM support that one check is skipped (and
said so); the KEM secrets are then inputs, as everywhere else here.

The ML-KEM values in the inputs (the ephemeral encapsulation key from its
seed, each ciphertext and shared secret from its `m`) were computed once
with FIPS 203 ML-KEM-768 (`KeyGen_internal(d, z)`, `Encaps_internal(ek,
m)`); the Rust test checks them against the ml-kem crate the code uses.
Every other chosen input is SHA-256 (or SHA-512 for the 64-byte seeds) of
an ASCII label, as `inputs.chosen_as` says.
"""

import argparse
import hashlib
import hmac
import json
import os
import struct
import sys

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric.x25519 import (
    X25519PrivateKey,
    X25519PublicKey,
)
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

HERE = os.path.dirname(os.path.abspath(__file__))
VECTORS = os.path.join(HERE, "kat_v2.json")

# docs/protocol.md, "End-to-end layer".
PROTOCOL_NAME = b"anonchat v2 KK+3KEM X25519 ML-KEM-768 ChaChaPoly SHA256"
LABEL_MIX = b"anonchat v2 mix"
LABEL_SPLIT = b"anonchat v2 split"
LABEL_RATCHET = b"anonchat v2 ratchet"
LABEL_HS = b"anonchat handshake cells v2"
LABEL_HS_TAGS = b"anonchat handshake cell tags v2"
LABEL_HS_CELLS = b"anonchat handshake cell keys v2"
E2E_VERSION = 2
KIND_INIT = 1
KIND_ACCEPT = 2
AEAD_TAG = 16
CELL_TAG = 16
HS_CELL_HEADER = 8 + 1 + 1 + 2  # msg_id, index, count, len
SESSION_HEADER_END = CELL_TAG + 40 + AEAD_TAG


# --- primitives ------------------------------------------------------------

def u64(i):
    return struct.pack(">Q", i)


def u32(i):
    return struct.pack(">I", i)


def hkdf(salt, ikm, info, length):
    """RFC 5869 with SHA-256."""
    return HKDF(algorithm=hashes.SHA256(), length=length, salt=salt, info=info).derive(ikm)


def mac(key, data):
    return hmac.new(key, data, hashlib.sha256).digest()


def prf(key, label, i):
    """PRF(k, label, i) = HMAC-SHA256(k, label || u64(i))."""
    return mac(key, label + u64(i))


def tag16(key, i):
    return prf(key, b"tag", i)[:16]


def aead(key, nonce, aad, plain):
    """ChaCha20-Poly1305: ciphertext || 16-byte tag."""
    return ChaCha20Poly1305(key).encrypt(nonce, plain, aad)


def aead_open(key, nonce, aad, sealed):
    return ChaCha20Poly1305(key).decrypt(nonce, sealed, aad)


ZERO_NONCE = bytes(12)


def body_nonce(r):
    """A session cell body's nonce: 0^4 || u64(round)."""
    return bytes(4) + u64(r)


def x25519_pub(secret):
    return (
        X25519PrivateKey.from_private_bytes(secret)
        .public_key()
        .public_bytes(Encoding.Raw, PublicFormat.Raw)
    )


def x25519(secret, public):
    """X25519, refusing a non-contributory (all-zero) output."""
    out = X25519PrivateKey.from_private_bytes(secret).exchange(
        X25519PublicKey.from_public_bytes(public)
    )
    if out == bytes(32):
        raise ValueError("non-contributory X25519 output")
    return out


def split_keys(okm):
    return [okm[i : i + 32] for i in range(0, len(okm), 32)]


# --- session start ---------------------------------------------------------

class SymmetricState:
    """Noise's (ck, h, k): docs/protocol.md, "Session start"."""

    def __init__(self):
        self.h = hashlib.sha256(PROTOCOL_NAME).digest()
        self.ck = self.h
        self.k = None

    def mix_hash(self, data):
        self.h = hashlib.sha256(self.h + data).digest()

    def mix_key(self, ikm):
        self.ck, self.k = split_keys(hkdf(self.ck, ikm, LABEL_MIX, 64))

    def encrypt_and_hash(self, plain):
        c = aead(self.k, ZERO_NONCE, self.h, plain)
        self.k = None
        self.mix_hash(c)
        return c

    def split(self):
        keys = split_keys(hkdf(self.ck, self.h, LABEL_SPLIT, 160))
        return dict(zip(["root", "i2r_header", "i2r_tags", "r2i_header", "r2i_tags"], keys))


def session_start(inp):
    """The INIT, the ACCEPT, and what each side's state is after them."""
    i, r, kem = inp["initiator"], inp["responder"], inp["mlkem"]
    s_i, s_r = unhex(i["x25519_secret"]), unhex(r["x25519_secret"])
    e_i, e_r = unhex(i["handshake_x25519_secret"]), unhex(r["handshake_x25519_secret"])
    fp_i, fp_r = unhex(i["fingerprint"]), unhex(r["fingerprint"])
    ekem = unhex(kem["handshake_ek"])
    ct = {n: unhex(kem[n]["ct"]) for n in ("ct1", "ct2", "ct3")}
    k = {n: unhex(kem[n]["shared"]) for n in ("ct1", "ct2", "ct3")}
    init_id = unhex(inp["init_id"])

    dh = {
        "es": x25519(e_i, x25519_pub(s_r)),
        "ss": x25519(s_i, x25519_pub(s_r)),
        "ee": x25519(e_r, x25519_pub(e_i)),
        "se": x25519(e_r, x25519_pub(s_i)),
    }
    # Both sides compute each DH from their own secret: check the mirror.
    assert dh["es"] == x25519(s_r, x25519_pub(e_i))
    assert dh["ss"] == x25519(s_r, x25519_pub(s_i))
    assert dh["ee"] == x25519(e_i, x25519_pub(e_r))
    assert dh["se"] == x25519(s_i, x25519_pub(e_r))

    ss = SymmetricState()
    for x in (fp_i, fp_r, x25519_pub(s_i), x25519_pub(s_r)):
        ss.mix_hash(x)

    head = bytes([KIND_INIT, E2E_VERSION])
    ss.mix_hash(head)
    ss.mix_hash(x25519_pub(e_i))
    ss.mix_hash(ekem)
    ss.mix_key(dh["es"])
    ss.mix_key(dh["ss"])
    ss.mix_hash(ct["ct1"])
    ss.mix_key(k["ct1"])
    payload = ss.encrypt_and_hash(u64(i["incarnation"]))
    init = head + x25519_pub(e_i) + ekem + ct["ct1"] + payload
    after_init = {"message": init, "chaining_key": ss.ck, "transcript_hash": ss.h}

    head = bytes([KIND_ACCEPT, E2E_VERSION])
    ss.mix_hash(head)
    ss.mix_hash(init_id)
    ss.mix_hash(x25519_pub(e_r))
    ss.mix_key(dh["ee"])
    ss.mix_key(dh["se"])
    ss.mix_hash(ct["ct2"])
    ss.mix_key(k["ct2"])
    ss.mix_hash(ct["ct3"])
    ss.mix_key(k["ct3"])
    payload = ss.encrypt_and_hash(u64(r["incarnation"]))
    accept = head + init_id + x25519_pub(e_r) + ct["ct2"] + ct["ct3"] + payload
    after_accept = {"message": accept, "chaining_key": ss.ck, "transcript_hash": ss.h}
    assert len(init) == 2330 and len(accept) == 2242
    return dh, after_init, after_accept, ss.split()


# --- handshake cells -------------------------------------------------------

def hs_keys(my_secret, my_fp, peer_pub, peer_fp):
    """(tag key, cell key) of both directions, seen from one side."""
    secret = hkdf(bytes(32), x25519(my_secret, peer_pub), LABEL_HS + min(my_fp, peer_fp) + max(my_fp, peer_fp), 32)

    def direction(a, b):
        return (
            hkdf(bytes(32), secret, LABEL_HS_TAGS + a + b, 32),
            hkdf(bytes(32), secret, LABEL_HS_CELLS + a + b, 32),
        )

    return secret, direction(my_fp, peer_fp), direction(peer_fp, my_fp)


def hs_cell(inp, spec, message):
    """One handshake cell carrying fragment `index` of a handshake message."""
    c = inp["cell_size"]
    me, peer = (
        (inp["initiator"], inp["responder"])
        if spec["from"] == "initiator"
        else (inp["responder"], inp["initiator"])
    )
    secret, (tags, cells), _ = hs_keys(
        unhex(me["x25519_secret"]),
        unhex(me["fingerprint"]),
        x25519_pub(unhex(peer["x25519_secret"])),
        unhex(peer["fingerprint"]),
    )
    # The receiver derives the same keys from its side.
    _, _, (rtags, rcells) = hs_keys(
        unhex(peer["x25519_secret"]),
        unhex(peer["fingerprint"]),
        x25519_pub(unhex(me["x25519_secret"])),
        unhex(me["fingerprint"]),
    )
    assert (rtags, rcells) == (tags, cells)
    per_cell = c - CELL_TAG - AEAD_TAG - HS_CELL_HEADER
    count = -(-len(message) // per_cell)
    index, rnd = spec["index"], spec["round"]
    chunk = message[index * per_cell : (index + 1) * per_cell]
    plain = unhex(spec["msg_id"]) + bytes([index, count]) + struct.pack(">H", len(chunk)) + chunk
    plain += bytes(c - CELL_TAG - AEAD_TAG - len(plain))
    tag = tag16(tags, rnd)
    round_key = prf(cells, b"cell", rnd)
    cell = tag + aead(round_key, ZERO_NONCE, tag, plain)
    assert len(cell) == c
    return {
        "secret": secret,
        "tag_key": tags,
        "cell_key": cells,
        "tag": tag,
        "round_key": round_key,
        "plaintext": plain,
        "cell": cell,
    }


# --- Double Ratchet with header encryption ---------------------------------

def kdf_rk_he(rk, dh_out):
    """New root key, chain key, next header key, next tag key."""
    return split_keys(hkdf(rk, dh_out, LABEL_RATCHET, 128))


def kdf_ck(ck):
    """(next chain key, message key)."""
    return mac(ck, b"\x02"), mac(ck, b"\x01")


class Party:
    """One side's ratchet, named as in Signal's specification."""

    def __init__(self, draws):
        self.draws = list(draws)  # the ratchet key pairs it will draw
        self.skipped = []  # [(n, mk)] of the current receiving epoch

    def draw(self):
        return self.draws.pop(0)

    @classmethod
    def alice(cls, seed, bob_ratchet_pub, draws):
        a = cls(draws)
        a.dhs = a.draw()
        a.dhr = bob_ratchet_pub
        a.rk, ck, a.nhks, a.ntks = kdf_rk_he(seed["root"], x25519(a.dhs, a.dhr))
        a.send = {"header": seed["i2r_header"], "tags": seed["i2r_tags"], "ck": ck}
        a.recv = None
        a.nhkr, a.ntkr = seed["r2i_header"], seed["r2i_tags"]
        a.ns = a.nr = a.pn = 0
        return a

    @classmethod
    def bob(cls, seed, ratchet_secret, draws):
        b = cls(draws)
        b.dhs, b.dhr, b.rk = ratchet_secret, None, seed["root"]
        b.send = b.recv = None
        b.nhks, b.ntks = seed["r2i_header"], seed["r2i_tags"]
        b.nhkr, b.ntkr = seed["i2r_header"], seed["i2r_tags"]
        b.ns = b.nr = b.pn = 0
        return b

    def state(self):
        chain = lambda c: c and {"header": c["header"], "tags": c["tags"], "ck": c["ck"]}
        return {
            "dhs": self.dhs,
            "rk": self.rk,
            "nhks": self.nhks,
            "ntks": self.ntks,
            "nhkr": self.nhkr,
            "ntkr": self.ntkr,
            "send": chain(self.send),
            "recv": chain(self.recv),
            "skipped": [{"n": n, "mk": mk} for n, mk in self.skipped],
        }

    def seal(self, rnd, payload):
        self.send["ck"], mk = kdf_ck(self.send["ck"])
        header = x25519_pub(self.dhs) + u32(self.pn) + u32(self.ns)
        self.ns += 1
        tag = tag16(self.send["tags"], rnd)
        hk = prf(self.send["header"], b"header", rnd)
        header_ct = aead(hk, ZERO_NONCE, tag, header)
        body = aead(mk, body_nonce(rnd), tag + header_ct, payload)
        return {
            "tag": tag,
            "header": header,
            "header_round_key": hk,
            "message_key": mk,
            "cell": tag + header_ct + body,
        }

    def dh_step(self, their):
        self.pn, self.ns, self.nr = self.ns, 0, 0
        self.skipped = []
        self.dhr = their
        self.rk, ck_r, nhkr, ntkr = kdf_rk_he(self.rk, x25519(self.dhs, their))
        self.dhs = self.draw()
        self.rk, ck_s, nhks, ntks = kdf_rk_he(self.rk, x25519(self.dhs, their))
        self.recv = {"header": self.nhkr, "tags": self.ntkr, "ck": ck_r}
        self.send = {"header": self.nhks, "tags": self.ntks, "ck": ck_s}
        self.nhkr, self.ntkr, self.nhks, self.ntks = nhkr, ntkr, nhks, ntks

    def open(self, rnd, cell):
        """The payload of a peer's cell sent in `rnd`, and the epoch its tag
        matched, found from the cell bytes alone."""
        tag = cell[:CELL_TAG]
        if self.recv and tag16(self.recv["tags"], rnd) == tag:
            epoch, hk = "current", self.recv["header"]
        elif tag16(self.ntkr, rnd) == tag:
            epoch, hk = "next", self.nhkr
        else:
            raise ValueError("no expected tag matches")
        header = aead_open(prf(hk, b"header", rnd), ZERO_NONCE, tag, cell[CELL_TAG:SESSION_HEADER_END])
        dh, (pn, n) = header[:32], struct.unpack(">II", header[32:])
        mk = None
        if epoch == "next":
            assert dh != self.dhr
            self.dh_step(dh)
        else:
            assert dh == self.dhr
            found = [k for (m, k) in self.skipped if m == n]
            if found:
                self.skipped = [(m, k) for (m, k) in self.skipped if m != n]
                mk = found[0]
        if mk is None:
            assert n >= self.nr
            while self.nr < n:
                self.recv["ck"], skipped = kdf_ck(self.recv["ck"])
                self.skipped.append((self.nr, skipped))
                self.nr += 1
            self.recv["ck"], mk = kdf_ck(self.recv["ck"])
            self.nr += 1
        payload = aead_open(mk, body_nonce(rnd), cell[:SESSION_HEADER_END], cell[SESSION_HEADER_END:])
        return epoch, payload


# --- the vectors -----------------------------------------------------------

def compute(inp):
    dh, after_init, after_accept, seed = session_start(inp)
    i, r = inp["initiator"], inp["responder"]
    parties = {
        "initiator": Party.alice(
            seed,
            x25519_pub(unhex(r["handshake_x25519_secret"])),
            [unhex(x) for x in i["ratchet_x25519_secrets"]],
        ),
        "responder": Party.bob(
            seed,
            unhex(r["handshake_x25519_secret"]),
            [unhex(x) for x in r["ratchet_x25519_secrets"]],
        ),
    }
    handshake = {
        "dh": dh,
        "init": after_init,
        "accept": after_accept,
        "split": seed,
        "initiator_state": parties["initiator"].state(),
        "responder_state": parties["responder"].state(),
    }
    messages = {"init": after_init["message"], "accept": after_accept["message"]}
    hs_cells = [hs_cell(inp, spec, messages[spec["message"]]) for spec in inp["handshake_cells"]]

    cells = inp["cells"]
    sealed = {}
    events = []
    for ev in inp["events"]:
        if "seal" in ev:
            idx = ev["seal"]
            spec = cells[idx]
            out = parties[spec["from"]].seal(spec["round"], unhex(spec["payload"]))
            sealed[idx] = out["cell"]
            out["state"] = parties[spec["from"]].state()
            events.append({"seal": idx, **out})
        else:
            idx = ev["open"]
            spec = cells[idx]
            to = "responder" if spec["from"] == "initiator" else "initiator"
            epoch, payload = parties[to].open(spec["round"], sealed[idx])
            assert payload == unhex(spec["payload"])
            events.append({"open": idx, "epoch": epoch, "state": parties[to].state()})
    for name, p in parties.items():
        assert not p.draws, f"{name} has ratchet keys left undrawn"
    return {"handshake": handshake, "handshake_cells": hs_cells, "events": events}


def to_json(x):
    if isinstance(x, bytes):
        return x.hex()
    if isinstance(x, dict):
        return {k: to_json(v) for k, v in x.items()}
    if isinstance(x, list):
        return [to_json(v) for v in x]
    return x


def unhex(s):
    return bytes.fromhex(s)


# --- checks of the inputs --------------------------------------------------

def read_key_file(path):
    """x25519 secret, ML-KEM seed, fingerprint and static X25519 public key
    of a private identity file ("ACSK", docs/protocol.md, "Identity bundle")."""
    with open(path, "rb") as f:
        b = f.read()
    assert b[:4] == b"ACSK" and b[4] == 1, "not a format-1 private identity"
    pos = 5
    (n,) = struct.unpack(">H", b[pos : pos + 2])
    pos += 2 + n
    x_secret, seed = b[pos : pos + 32], b[pos + 32 : pos + 96]
    pos += 96
    (n,) = struct.unpack(">H", b[pos : pos + 2])
    signed = b[pos + 2 : pos + 2 + n]
    assert signed[:4] == b"ACID" and signed[4] == 1, "not a format-1 bundle"
    pos = 5 + 8 + 4
    x_pub = signed[pos : pos + 32]
    pos += 32 + 1184
    (n,) = struct.unpack(">H", signed[pos : pos + 2])
    spki = signed[pos + 2 : pos + 2 + n]
    return x_secret, seed, hashlib.sha256(spki).digest(), x_pub


def check_inputs(inp):
    """Problems found in the inputs, and notes on what was checked."""
    problems, notes = [], []
    seeds = {}
    for side in ("initiator", "responder"):
        s = inp[side]
        x_secret, seed, fp, x_pub = read_key_file(os.path.join(HERE, s["key_file"]))
        seeds[side] = seed
        if x_pub != x25519_pub(x_secret):
            problems.append(f"{s['key_file']}: X25519 secret does not match the bundle")
        for field, value in (("x25519_secret", x_secret), ("fingerprint", fp)):
            if unhex(s[field]) != value:
                problems.append(f"inputs.{side}.{field} differs from {s['key_file']}")
    notes.append("identity inputs match the key files")
    try:
        from cryptography.hazmat.primitives.asymmetric import mlkem
    except ImportError:
        mlkem = None
    kem = inp["mlkem"]
    if mlkem is None:
        notes.append("ML-KEM check skipped: this cryptography has no ML-KEM")
        return problems, notes
    try:
        key = lambda seed: mlkem.MLKEM768PrivateKey.from_seed_bytes(seed)
        eph = key(unhex(inp["initiator"]["handshake_mlkem_seed"]))
    except Exception as e:  # cryptography built against an OpenSSL without ML-KEM
        notes.append(f"ML-KEM check skipped: {e}")
        return problems, notes
    if eph.public_key().public_bytes_raw() != unhex(kem["handshake_ek"]):
        problems.append("inputs.mlkem.handshake_ek is not the key of its seed")
    for name, dk in (("ct1", key(seeds["responder"])), ("ct2", eph), ("ct3", key(seeds["initiator"]))):
        if dk.decapsulate(unhex(kem[name]["ct"])) != unhex(kem[name]["shared"]):
            problems.append(f"inputs.mlkem.{name}: the shared secret is not what decapsulation gives")
    notes.append("ML-KEM inputs checked by decapsulation")
    return problems, notes


def differences(want, got, path="expected"):
    if isinstance(want, dict) and isinstance(got, dict):
        out = []
        for k in sorted(set(want) | set(got)):
            if k not in want or k not in got:
                out.append(f"{path}.{k}: {'missing' if k not in got else 'not computed'}")
            else:
                out += differences(want[k], got[k], f"{path}.{k}")
        return out
    if isinstance(want, list) and isinstance(got, list):
        if len(want) != len(got):
            return [f"{path}: {len(got)} entries, computed {len(want)}"]
        return [d for i, (a, b) in enumerate(zip(want, got)) for d in differences(a, b, f"{path}[{i}]")]
    if want == got:
        return []
    if isinstance(want, str) and isinstance(got, str):
        at = next((i for i, (a, b) in enumerate(zip(want, got)) if a != b), min(len(want), len(got)))
        return [f"{path}: differs from hex digit {at}: file has ...{got[at:at + 32]}, computed ...{want[at:at + 32]}"]
    return [f"{path}: file has {got!r}, computed {want!r}"]


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    mode = ap.add_mutually_exclusive_group(required=True)
    mode.add_argument("--check", action="store_true", help="compare with the vector file, exit 1 on a difference")
    mode.add_argument("--write", action="store_true", help="write the expected outputs into the vector file")
    ap.add_argument("file", nargs="?", default=VECTORS)
    args = ap.parse_args()

    with open(args.file) as f:
        vectors = json.load(f)
    problems, notes = check_inputs(vectors["inputs"])
    expected = to_json(compute(vectors["inputs"]))
    if args.write:
        if problems:
            print("\n".join(["inputs are inconsistent:"] + problems), file=sys.stderr)
            return 1
        vectors["expected"] = expected
        with open(args.file, "w") as f:
            json.dump(vectors, f, indent=1)
            f.write("\n")
        print(f"wrote {args.file} ({'; '.join(notes)})")
        return 0
    problems += differences(expected, vectors.get("expected"))
    if problems:
        print("\n".join([f"{args.file}: {len(problems)} mismatches"] + problems), file=sys.stderr)
        return 1
    print(f"{args.file}: every expected value matches ({'; '.join(notes)})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
