#!/usr/bin/env python3
"""Builds fuzz seed corpora from the protocol crate's golden fixtures.

request_decode / response_decode inputs are [api key byte][version byte][body]; the golden frames
are rearranged into that layout (and kept whole too, for the full-frame path). record_batch_decode
gets every record batch and legacy message set; frame_reader gets size-prefixed request frames.
Usage: python3 fuzz/seed_corpus.py   (writes fuzz/corpus/<target>/, which git ignores)
"""
import json
import os
import struct

HERE = os.path.dirname(os.path.abspath(__file__))
GOLDEN = os.path.join(HERE, "..", "kafka-protocol", "tests", "fixtures", "golden")


def main():
    manifest = json.load(open(os.path.join(GOLDEN, "manifest.json")))
    out = {t: [] for t in ("request_decode", "response_decode", "record_batch_decode", "frame_reader")}
    for e in manifest:
        data = open(os.path.join(GOLDEN, e["file"]), "rb").read()
        kind = e["kind"]
        if kind in ("request", "response"):
            body = data[e["body_offset"]:] if e.get("body_offset") is not None else data
            seed = bytes([e["api_key"] % 256, e["api_version"] % 256]) + body
            target = "request_decode" if kind == "request" else "response_decode"
            out[target].append(seed)
            if kind == "request":
                out["request_decode"].append(bytes([e["api_key"], e["api_version"]]) + data)
                out["frame_reader"].append(bytes([7]) + struct.pack(">i", len(data)) + data)
        else:
            out["record_batch_decode"].append(data)
    for target, seeds in out.items():
        d = os.path.join(HERE, "corpus", target)
        os.makedirs(d, exist_ok=True)
        for i, s in enumerate(seeds):
            with open(os.path.join(d, f"golden-{i:03}"), "wb") as f:
                f.write(s)
        print(f"{target}: {len(seeds)} seeds")


if __name__ == "__main__":
    main()
