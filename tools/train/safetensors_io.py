"""Minimal safetensors reader/writer (numpy + torch, no extra packages): F32, F64, BF16, F16, I64, I32.
BF16 is written by round-to-nearest-even of the float32 bits (like torch's .to(torch.bfloat16))."""
import json
import struct

import numpy as np
import torch

_NP = {'F32': '<f4', 'F64': '<f8', 'F16': '<f2', 'I64': '<i8', 'I32': '<i4', 'U8': 'u1'}


def read(path):
    """name -> float64/int64 torch tensor (BF16/F16/F32 upcast exactly)."""
    with open(path, 'rb') as f:
        n = struct.unpack('<Q', f.read(8))[0]
        header = json.loads(f.read(n))
        data = f.read()
    out = {}
    for name, meta in header.items():
        if name == '__metadata__':
            continue
        a, b = meta['data_offsets']
        raw = data[a:b]
        dt = meta['dtype']
        if dt == 'BF16':
            bits = np.frombuffer(raw, dtype='<u2').astype(np.uint32) << 16
            arr = bits.view(np.float32).astype(np.float64)
        elif dt in ('F32', 'F16', 'F64'):
            arr = np.frombuffer(raw, dtype=_NP[dt]).astype(np.float64)
        elif dt in ('I64', 'I32'):
            arr = np.frombuffer(raw, dtype=_NP[dt]).astype(np.int64)
        else:
            raise ValueError(f'{name}: unsupported dtype {dt}')
        out[name] = torch.from_numpy(arr.reshape(meta['shape']).copy())
    return out


def bf16_bytes(t):
    """float tensor -> BF16 bytes (round to nearest even), and the rounded values as float64."""
    f = t.detach().to(torch.float32).contiguous().numpy()
    bits = f.view(np.uint32).astype(np.uint64)
    rounded = ((bits + 0x7FFF + ((bits >> 16) & 1)) >> 16).astype(np.uint16)
    back = (rounded.astype(np.uint32) << 16).view(np.float32).astype(np.float64)
    return rounded.tobytes(), torch.from_numpy(back)


def write(path, tensors, dtypes=None, metadata=None):
    """tensors: name -> torch tensor; dtypes: name -> 'BF16' | 'F32' | 'I64' ... (default F32 / I64)."""
    header = {'__metadata__': metadata or {'format': 'pt'}}
    blobs, off = [], 0
    for name, t in tensors.items():
        dt = (dtypes or {}).get(name) or ('I64' if not t.is_floating_point() else 'F32')
        if dt == 'BF16':
            b, _ = bf16_bytes(t)
        else:
            b = np.ascontiguousarray(t.detach().cpu().numpy().astype(_NP[dt])).tobytes()
        header[name] = {'dtype': dt, 'shape': list(t.shape), 'data_offsets': [off, off + len(b)]}
        blobs.append(b)
        off += len(b)
    h = json.dumps(header, separators=(',', ':')).encode()
    h += b' ' * ((8 - len(h) % 8) % 8)
    with open(path, 'wb') as f:
        f.write(struct.pack('<Q', len(h)))
        f.write(h)
        for b in blobs:
            f.write(b)
