#!/usr/bin/env python3
"""Optional cross-check of protect.json with a second implementation.

Recomputes every vector from the key block with the Python `cryptography`
package (pip install cryptography); neither Node nor src/protect is involved.
Usage: python3 test/vectors/crosscheck.py
"""
import json
import pathlib
import sys

from cryptography.hazmat.primitives.ciphers.aead import AESCCM, AESGCM, ChaCha20Poly1305

vectors = json.loads((pathlib.Path(__file__).parent / "protect.json").read_text())
checked = 0
for a in vectors["aeads"]:
    block = bytes.fromhex(a["keyBlock"])
    k = a["keyLength"]
    keys = {
        "client": (block[0:k], block[2 * k : 2 * k + 12]),
        "server": (block[k : 2 * k], block[2 * k + 12 : 2 * k + 24]),
    }
    for m in a["messages"]:
        key, iv = keys[m["sender"]]
        seq = int(m["seq"])
        n = max(1, (seq.bit_length() + 7) // 8)
        header = bytes([0x20 | (n - 1)]) + seq.to_bytes(n, "big")
        nonce = (int.from_bytes(iv, "big") ^ seq).to_bytes(12, "big")
        aad = header + bytes.fromhex(m.get("externalAad", ""))
        if a["algorithm"].endswith("gcm"):
            aead = AESGCM(key)
        elif a["algorithm"] == "chacha20-poly1305":
            aead = ChaCha20Poly1305(key)
        else:
            aead = AESCCM(key, tag_length=a["tagLength"])
        sealed = aead.encrypt(nonce, bytes.fromhex(m["plaintext"]), aad)
        expected = bytes.fromhex(m["message"])
        if header + sealed != expected:
            sys.exit(f"MISMATCH {a['aead']} {m['sender']} seq {seq}")
        checked += 1
print(f"ok: {checked} vectors reproduced with python cryptography")
