# Apply a flatenn fault mask (inject --save-masks) to int4 weight codes with numpy only, so any tool
# (a PyTorch injector, say) runs exactly the faults flatenn ran. Cells follow DESIGN §2: layer by layer
# (model order), code by code (row-major [out][in][kh][kw]), bit 0 (least significant) first.
import json
import struct
import sys

import numpy as np

DTYPES = {'U8': np.uint8, 'I8': np.int8, 'U32': np.uint32, 'I32': np.int32, 'F32': np.float32}


def read_safetensors(path):
    """{name: numpy array}, metadata dict."""
    with open(path, 'rb') as f:
        buf = f.read()
    n = struct.unpack('<Q', buf[:8])[0]
    header = json.loads(buf[8:8 + n])
    meta = header.pop('__metadata__', {})
    base = 8 + n
    tensors = {}
    for name, t in header.items():
        b, e = t['data_offsets']
        tensors[name] = np.frombuffer(buf[base + b:base + e], dtype=DTYPES[t['dtype']]).reshape(t['shape'])
    return tensors, meta


def apply_mask(codes, layers, cells, fault):
    """codes: {layer name: signed integer codes (any shape, row-major)}; layers: the masks file's
    metadata 'layers' (name, count, bits, cellOffset); cells: uint32 cell indices; fault: 'bitflip',
    'sa0' or 'sa1'. Returns faulty copies of the codes (same shapes, int64)."""
    out = {}
    cells = np.asarray(cells, dtype=np.int64)
    for l in layers:
        bits, lo = l['bits'], l['cellOffset']
        flat = np.asarray(codes[l['name']], dtype=np.int64).reshape(-1).copy()
        assert flat.size == l['count'], f"{l['name']}: {flat.size} codes, the layout says {l['count']}"
        sel = cells[(cells >= lo) & (cells < lo + l['count'] * bits)] - lo
        mask = np.zeros(l['count'], dtype=np.int64)
        np.bitwise_or.at(mask, sel // bits, np.left_shift(1, sel % bits))
        field = (1 << bits) - 1
        u = flat & field  # the stored two's-complement field
        if fault == 'bitflip':
            u ^= mask
        elif fault == 'sa0':
            u &= ~mask & field
        elif fault == 'sa1':
            u |= mask
        else:
            raise ValueError(f'unknown fault type {fault}')
        out[l['name']] = np.where(u >= 1 << (bits - 1), u - (1 << bits), u).reshape(np.shape(codes[l['name']]))
    return out


def codes_of_deployed(path, layers):
    """Signed codes per layer from a flatenn deployed model's packed weight memory (4-bit: low nibble first)."""
    t, meta = read_safetensors(path)
    mem = t['weight_memory']
    layout = {l['name']: l for l in json.loads(meta['flatenn'])['layers']}
    out = {}
    for l in layers:
        d = layout[l['name']]
        b = mem[d['byteOffset']:d['byteOffset'] + d['byteLength']].astype(np.int64)
        per = 8 // d['bits']
        u = ((b[:, None] >> (np.arange(per) * d['bits'])) & ((1 << d['bits']) - 1)).reshape(-1)[:d['count']]
        out[l['name']] = np.where(u >= 1 << (d['bits'] - 1), u - (1 << d['bits']), u)
    return out


if __name__ == '__main__':
    # python3 apply_masks.py masks.safetensors model.int4.safetensors bitflip/0.01/0
    # prints the faulty codes of every layer as JSON
    masks, mmeta = read_safetensors(sys.argv[1])
    layers = json.loads(mmeta['flatenn'])['layers']
    key = sys.argv[3]
    faulty = apply_mask(codes_of_deployed(sys.argv[2], layers), layers, masks[key], key.split('/')[0])
    print(json.dumps({k: v.reshape(-1).tolist() for k, v in faulty.items()}))
