"""PyTorch SDPA baselines on the lent GPU, for the same shapes as our webgpu benchmarks (one lease, side by side).

Usage (on the device): python3 bench/device/torch_sdpa.py [--out FILE]
Prints one line per measurement: name, ms (median of CUDA-event timed batches), and writes JSON when --out is given.
Layout: SDPA takes BHSD; inputs are made directly in that layout (layout conversion is not timed).
"""
import argparse, json, math, statistics
import torch
import torch.nn.functional as F

p = argparse.ArgumentParser()
p.add_argument('--out')
args = p.parse_args()
dev = 'cuda'
torch.backends.cuda.matmul.allow_tf32 = False
torch.backends.cudnn.allow_tf32 = False
rows = []


def timed(fn, iters=50, reps=5):
    fn(); torch.cuda.synchronize()
    per = []
    for _ in range(reps):
        a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        a.record()
        for _ in range(iters):
            fn()
        b.record(); torch.cuda.synchronize()
        per.append(a.elapsed_time(b) / iters)
    return statistics.median(per)


def attempt(name, fn, **extra):
    try:
        record(name, fn(), **extra)
    except Exception as e:  # e.g. enable_gqa needs torch >= 2.5
        print(f'{name:60s} skipped: {e}', flush=True)


def record(name, ms, **extra):
    rows.append({'name': name, 'ms': ms, **extra})
    print(f'{name:60s} {ms:9.3f} ms ' + ' '.join(f'{k}={v}' for k, v in extra.items()), flush=True)


def qkv(b, hq, hk, sq, sk, d, dtype=torch.float32, grad=False):
    q = torch.randn(b, hq, sq, d, device=dev, dtype=dtype, requires_grad=grad)
    k = torch.randn(b, hk, sk, d, device=dev, dtype=dtype, requires_grad=grad)
    v = torch.randn(b, hk, sk, d, device=dev, dtype=dtype, requires_grad=grad)
    return q, k, v


def fwd_bwd(fn, q, k, v):
    def run():
        q.grad = k.grad = v.grad = None
        o = fn()
        o.backward(torch.ones_like(o))
    return run


print('device:', torch.cuda.get_device_name(0), 'torch', torch.__version__, flush=True)
S, H, D = 4096, 16, 64
with torch.no_grad():
    q, k, v = qkv(1, H, H, S, S, D)
    record('sdpa fp32 dense S4096 fwd', timed(lambda: F.scaled_dot_product_attention(q, k, v)))
    record('sdpa fp32 causal S4096 fwd', timed(lambda: F.scaled_dot_product_attention(q, k, v, is_causal=True)))
    causal_mask = torch.ones(S, S, device=dev, dtype=torch.bool).tril()
    record('sdpa fp32 causal-as-bool-mask S4096 fwd',
           timed(lambda: F.scaled_dot_product_attention(q, k, v, attn_mask=causal_mask)))
    bias = torch.randn(1, H, S, S, device=dev)
    record('sdpa fp32 bias[1,H,S,S] S4096 fwd', timed(lambda: F.scaled_dot_product_attention(q, k, v, attn_mask=bias)))
    slopes = torch.tensor([2 ** (-8 * (h + 1) / H) for h in range(H)], device=dev)
    pos = torch.arange(S, device=dev)
    alibi = -slopes[:, None, None] * (pos[None, :, None] - pos[None, None, :]).abs()
    record('sdpa fp32 alibi-as-bias S4096 fwd', timed(lambda: F.scaled_dot_product_attention(q, k, v, attn_mask=alibi)))
    record('sdpa fp32 dense S4096 fwd dropout0.1',
           timed(lambda: F.scaled_dot_product_attention(q, k, v, dropout_p=0.1)))
    qb, kb, vb = (x.bfloat16() for x in (q, k, v))
    record('sdpa bf16 dense S4096 fwd', timed(lambda: F.scaled_dot_product_attention(qb, kb, vb)))
q, k, v = qkv(1, H, H, S, S, D, grad=True)
record('sdpa fp32 dense S4096 fwd+bwd', timed(fwd_bwd(lambda: F.scaled_dot_product_attention(q, k, v), q, k, v), 20))
record('sdpa fp32 causal S4096 fwd+bwd',
       timed(fwd_bwd(lambda: F.scaled_dot_product_attention(q, k, v, is_causal=True), q, k, v), 20))
record('sdpa fp32 dense S4096 fwd+bwd dropout0.1',
       timed(fwd_bwd(lambda: F.scaled_dot_product_attention(q, k, v, dropout_p=0.1), q, k, v), 20))
with torch.no_grad():
    for sk in (4096, 32768):
        q, k, v = qkv(1, 32, 8, 1, sk, 128)
        try:
            ms = timed(lambda: F.scaled_dot_product_attention(q, k, v, enable_gqa=True))
            record(f'sdpa fp32 decode 1x{sk} H32/8 D128 (enable_gqa)', ms,
                   kv_GBps=round(2 * 8 * sk * 128 * 4 / (ms * 1e-3) / 1e9, 1))
        except TypeError as e:
            print('enable_gqa unavailable:', e, flush=True)
        kr, vr = k.repeat_interleave(4, 1), v.repeat_interleave(4, 1)
        ms = timed(lambda: F.scaled_dot_product_attention(q, kr, vr))
        record(f'sdpa fp32 decode 1x{sk} H32/32 D128 (K/V repeated)', ms)
if args.out:
    json.dump({'device': torch.cuda.get_device_name(0), 'rows': rows}, open(args.out, 'w'), indent=1)
