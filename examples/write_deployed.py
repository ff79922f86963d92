# Write a flatenn deployed int4 model (format version 2) with numpy only: e.g. from a model trained in
# PyTorch, after computing its integer weight codes, output scales and biases. See the README's
# "Deployed int4 models" section for every field.
import hashlib
import json
import struct

import numpy as np


def pack_codes(codes, bits):
    """Signed codes (row-major) -> bytes: b-bit two's complement, 8/b per byte, lowest bits first."""
    u = (np.asarray(codes, dtype=np.int64).reshape(-1) & ((1 << bits) - 1)).astype(np.uint8)
    per = 8 // bits
    u = np.concatenate([u, np.zeros((-len(u)) % per, dtype=np.uint8)]).reshape(-1, per)
    return np.bitwise_or.reduce(u << (np.arange(per, dtype=np.uint8) * bits), axis=1).astype(np.uint8)


def write_safetensors(path, tensors, metadata):
    """tensors: {name: numpy array of uint8 / float32 / float64}; metadata: {str: str}."""
    dt = {np.dtype(np.uint8): 'U8', np.dtype(np.float32): 'F32', np.dtype(np.float64): 'F64'}
    header, blobs, off = {'__metadata__': metadata}, [], 0
    for name in sorted(tensors):
        a = np.ascontiguousarray(tensors[name])
        b = a.astype(a.dtype.newbyteorder('<')).tobytes()
        header[name] = {'dtype': dt[a.dtype], 'shape': list(a.shape), 'data_offsets': [off, off + len(b)]}
        blobs.append(b)
        off += len(b)
    h = json.dumps(header, separators=(',', ':')).encode()
    h += b' ' * ((-len(h)) % 8)
    with open(path, 'wb') as f:
        f.write(struct.pack('<Q', len(h)) + h + b''.join(blobs))


def write_deployed(path, *, arch, dataset, input, act_bits, layers, act_range, topology):
    """layers: in model order, each {name, op: 'conv'|'linear', bits, codes (int array, weight shape),
    out_scale (O floats), out_bias (O floats)}; input: {channels, height, width, mean, std, padding};
    act_range: one range r per ReLU site; topology: the graph (README)."""
    memory, meta_layers, byte, cell = [], [], 0, 0
    for l in layers:
        codes = np.asarray(l['codes'])
        count = int(codes.size)
        packed = pack_codes(codes, l['bits'])
        meta_layers.append({'name': l['name'], 'op': l['op'], 'shape': list(codes.shape), 'bits': l['bits'], 'count': count,
                            'byteOffset': byte, 'byteLength': len(packed), 'cellOffset': cell, 'cells': count * l['bits']})
        memory.append(packed)
        byte += len(packed)
        cell += count * l['bits']
    layout = json.dumps([[m['name'], m['count'], m['bits']] for m in meta_layers], separators=(',', ':'))
    meta = {'format': 'flatenn.deployed', 'version': 2, 'arch': arch, 'dataset': dataset,
            'numClasses': topology['numClasses'], 'input': input, 'actBits': act_bits, 'layers': meta_layers,
            'memoryBytes': byte, 'cells': cell, 'layoutHash': hashlib.sha256(layout.encode()).hexdigest()[:16],
            'topology': topology}
    tensors = {'weight_memory': np.concatenate(memory), 'act.range': np.asarray(act_range, dtype=np.float32)}
    for l in layers:
        tensors[l['name'] + '.out_scale'] = np.asarray(l['out_scale'], dtype=np.float64)
        tensors[l['name'] + '.out_bias'] = np.asarray(l['out_bias'], dtype=np.float64)
    write_safetensors(path, tensors, {'flatenn': json.dumps(meta)})


if __name__ == '__main__':
    # A small model: 1x28x28 -> conv 4@5x5 stride 2 pad 2 -> ReLU -> maxpool 2 -> flatten -> linear 196 -> 10.
    import sys
    rng = np.random.default_rng(1)
    conv = rng.integers(-7, 8, size=(4, 1, 5, 5))
    fc = rng.integers(-7, 8, size=(10, 196))
    topology = {'arch': 'example', 'numClasses': 10, 'sites': 1, 'output': 5, 'nodes': [
        {'op': 'input', 'id': 0, 'channels': 1, 'height': 28, 'width': 28},
        {'op': 'conv', 'id': 1, 'input': 0, 'name': 'conv', 'inChannels': 1, 'outChannels': 4, 'kernel': 5, 'stride': 2, 'pad': 2, 'bias': True},
        {'op': 'relu', 'id': 2, 'input': 1, 'site': 0},
        {'op': 'maxpool', 'id': 3, 'input': 2, 'kernel': 2, 'stride': 2},
        {'op': 'flatten', 'id': 4, 'input': 3},
        {'op': 'linear', 'id': 5, 'input': 4, 'name': 'fc', 'inFeatures': 196, 'outFeatures': 10, 'bias': True}]}
    write_deployed(sys.argv[1], arch='example', dataset='fashion-mnist',
                   input={'channels': 1, 'height': 28, 'width': 28, 'mean': [72.93], 'std': 90.0, 'padding': 'normalized'},
                   act_bits=4, act_range=[3.0], topology=topology, layers=[
                       {'name': 'conv', 'op': 'conv', 'bits': 4, 'codes': conv, 'out_scale': np.full(4, 0.05), 'out_bias': np.zeros(4)},
                       {'name': 'fc', 'op': 'linear', 'bits': 4, 'codes': fc, 'out_scale': np.full(10, 0.02), 'out_bias': np.zeros(10)}])
    print(json.dumps({'conv': conv.reshape(-1).tolist(), 'fc': fc.reshape(-1).tolist()}))
