#!/usr/bin/env python3
"""Known-answer vectors for anonchat's group sender chains (protocol v2,
groups).

A second implementation, independent of the Rust code: written from
docs/protocol.md ("Groups", "Sender chains") with Python's hashlib/hmac and
the `cryptography` package (HKDF-SHA256, ChaCha20-Poly1305, Ed25519; RFC
8032 signatures are deterministic). From fixed inputs (seed, signing key,
sender fingerprint, group id, epoch, rounds and payloads) it computes the
tag, header and first chain keys, and for each cell its tag, header round
key, message key, signature and bytes, and the bundle. The Rust test
`e2e::tests::kat::group_chain_matches_the_vectors` runs the real code on
the same inputs and checks every value.

  kat_group.py --check    recompute and compare with kat_group.json
  kat_group.py --write    recompute and write the expected outputs
"""

import argparse
import json
import os
import sys

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from kat_v2 import (
    ZERO_NONCE,
    aead,
    body_nonce,
    differences,
    hkdf,
    kdf_ck,
    prf,
    tag16,
    to_json,
    u32,
    u64,
    unhex,
)

HERE = os.path.dirname(os.path.abspath(__file__))
VECTORS = os.path.join(HERE, "kat_group.json")

LABEL_SEED = b"anonchat v2 group sender chain"
LABEL_SIGNED = b"anonchat v2 group cell"
OVERHEAD = 16 + 4 + 16 + 64 + 16  # tag, sealed index, signature, body tag


def compute(inp):
    seed, group, epoch = unhex(inp["seed"]), unhex(inp["group"]), inp["epoch"]
    sender = unhex(inp["sender_fingerprint"])
    signing = Ed25519PrivateKey.from_private_bytes(unhex(inp["signing_key"]))
    verifying = signing.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    info = lambda label: LABEL_SEED + label + group + u32(epoch)
    tags = hkdf(b"", seed, info(b"tags"), 32)
    header = hkdf(b"", seed, info(b"header"), 32)
    ck = hkdf(b"", seed, info(b"chain"), 32)
    bundle = (
        bytes([1]) + group + u32(epoch) + u32(0) + tags + header + ck + verifying
        + u64(inp["first_msg"])
    )
    cells = []
    for index, spec in enumerate(inp["cells"]):
        rnd, payload = spec["round"], unhex(spec["payload"])
        assert len(payload) == inp["cell_size"] - OVERHEAD
        ck, mk = kdf_ck(ck)
        tag = tag16(tags, rnd)
        hk = prf(header, b"header", rnd)
        sealed_index = aead(hk, ZERO_NONCE, tag, u32(index))
        signed = LABEL_SIGNED + sender + group + u32(epoch) + u64(rnd) + u32(index) + payload
        signature = signing.sign(signed)
        body = aead(mk, body_nonce(rnd), tag + sealed_index, payload + signature)
        cells.append({
            "tag": tag,
            "header_round_key": hk,
            "message_key": mk,
            "signature": signature,
            "cell": tag + sealed_index + body,
        })
    return {
        "tag_key": tags,
        "header_key": header,
        "chain_key": hkdf(b"", seed, info(b"chain"), 32),
        "verifying_key": verifying,
        "bundle": bundle,
        "cells": cells,
    }


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    mode = ap.add_mutually_exclusive_group(required=True)
    mode.add_argument("--check", action="store_true")
    mode.add_argument("--write", action="store_true")
    args = ap.parse_args()
    with open(VECTORS) as f:
        vectors = json.load(f)
    expected = to_json(compute(vectors["inputs"]))
    if args.write:
        vectors["expected"] = expected
        with open(VECTORS, "w") as f:
            json.dump(vectors, f, indent=1)
            f.write("\n")
        print(f"wrote {VECTORS}")
        return 0
    problems = differences(expected, vectors.get("expected"))
    if problems:
        print("\n".join([f"{VECTORS}: {len(problems)} mismatches"] + problems), file=sys.stderr)
        return 1
    print(f"{VECTORS}: every expected value matches")
    return 0


if __name__ == "__main__":
    sys.exit(main())
