#!/usr/bin/python3
"""Independent safetensors reader using only json and numpy (an outside check of flatenn's writer).

    /usr/bin/python3 scripts/read_safetensors.py FILE            # names, dtypes, shapes, metadata
    /usr/bin/python3 scripts/read_safetensors.py FILE --values   # the same as JSON, values included

It reads the layout straight from the spec (https://github.com/huggingface/safetensors): an 8-byte
little-endian header length N, N bytes of JSON, then the data buffer. Where the `safetensors` package
is installed, `from safetensors.numpy import load_file; load_file(FILE)` returns the same arrays.

On Debian, numpy is the python3-numpy package, which imports under /usr/bin/python3 only.
flatenn's test suite (test/io/safetensors.test.ts) runs this file to check files that TypeScript wrote.
"""
import json
import math
import struct
import sys

import numpy as np

DTYPES = {
    "F64": "<f8", "F32": "<f4", "I64": "<i8", "I32": "<i4", "U32": "<u4",
    "I16": "<i2", "U16": "<u2", "I8": "i1", "U8": "u1",
}


def load(path):
    """Return ({name: numpy array}, {metadata key: value}) for a safetensors file."""
    with open(path, "rb") as f:
        raw = f.read()
    (n,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8:8 + n].decode("utf-8"))
    metadata = header.pop("__metadata__", {})
    data = raw[8 + n:]
    spans = sorted(tuple(info["data_offsets"]) for info in header.values())
    pos = 0
    for begin, end in spans:
        assert begin == pos, f"{path}: data_offsets not contiguous at byte {pos}"
        pos = end
    assert pos == len(data), f"{path}: tensors cover {pos} bytes, buffer has {len(data)}"
    tensors = {}
    for name, info in header.items():
        begin, end = info["data_offsets"]
        arr = np.frombuffer(data[begin:end], dtype=np.dtype(DTYPES[info["dtype"]]))
        tensors[name] = arr.reshape(info["shape"])
    return tensors, metadata


def _text(v):
    """A value as text that JavaScript's Number() (or BigInt()) reads back exactly."""
    if isinstance(v, float):
        if math.isnan(v):
            return "NaN"
        if math.isinf(v):
            return "Infinity" if v > 0 else "-Infinity"
        return repr(v)
    return str(v)


def main(argv):
    if len(argv) < 2 or argv[1] in ("-h", "--help"):
        print(__doc__)
        return 2
    tensors, metadata = load(argv[1])
    out = {"metadata": metadata, "tensors": {}}
    for name, arr in tensors.items():
        entry = {"dtype": arr.dtype.str, "shape": list(arr.shape)}
        if "--values" in argv:
            entry["values"] = [_text(v) for v in arr.ravel().tolist()]
        out["tensors"][name] = entry
    json.dump(out, sys.stdout, indent=None if "--values" in argv else 1)
    print()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
