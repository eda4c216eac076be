"""PyTorch eager twin of loopscale's reference models, for `make bench` (benches/train_ref.rs).

The same networks as src/model (pre-norm GPT; Parcae looped model with the diagonal injection)
in loopscale's default recipe (the Parcae reference's: tied embeddings, "scaled-zero" init —
orthogonal matrices with entry std √(2/(5d)), output projections zero, C orthogonal × √(2/5) —,
RMSNorm ε 1e-5, QK-norm without gains, RoPE base 50 000, the recurrent state drawn from a
truncated normal at the embedding's std), the same AdamW (decoupled decay on the blocks'
matrices only, global-norm clipping) and the same data (random byte windows of the training
split of the corpus), written
the way a PyTorch user would write them in eager mode: nn.functional ops, torch.optim.AdamW,
optionally compiled (`--compile`: `torch.compile` of the model, Inductor's default mode, the
compilation done in the untimed warm-up steps) and optionally under CPU autocast to bfloat16
(`--precision bf16`: matmuls in bf16, weights, optimizer state and the loss in fp32). Prints one
JSON line: tokens/s over the timed steps and the loss at every step.

Usage: torch_reference.py --arch gpt|looped --steps N --threads T [--attention manual|sdpa]
       [--compile] [--precision fp32|bf16]
"""

import argparse
import json
import math
import time

import torch
import torch.nn.functional as F

EPS = 1e-5
ROPE_BASE = 50_000.0
DEFAULT_DECAY = 0.447
MIN_DECAY_RATE = 1e-4


def init_std(d):
    """scaled-zero's entry scale for a width-d model."""
    return math.sqrt(2 / (5 * d))


class RmsNorm(torch.nn.Module):
    def __init__(self, dim, gain=True):
        super().__init__()
        self.gain = torch.nn.Parameter(torch.ones(dim)) if gain else None

    def forward(self, x):
        x = x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + EPS)
        return x if self.gain is None else x * self.gain


def orthogonal(shape, std):
    """A random orthogonal matrix whose entries have standard deviation `std`."""
    w = torch.empty(*shape)
    torch.nn.init.orthogonal_(w, gain=std * math.sqrt(max(shape)))
    return torch.nn.Parameter(w)


def zeros(shape):
    return torch.nn.Parameter(torch.zeros(*shape))


class Rope:
    def __init__(self, head_dim, max_len):
        half = head_dim // 2
        inv_freq = ROPE_BASE ** (-(torch.arange(half, dtype=torch.float64) * 2) / head_dim)
        angles = torch.arange(max_len, dtype=torch.float64)[:, None] * inv_freq[None, :]
        self.cos = angles.cos().float()[:, None, :]  # (t, 1, half)
        self.sin = angles.sin().float()[:, None, :]

    def apply(self, x):  # (b, t, h, hd)
        t, half = x.shape[1], x.shape[-1] // 2
        cos, sin = self.cos[:t], self.sin[:t]
        x1, x2 = x[..., :half], x[..., half:]
        return torch.cat([x1 * cos - x2 * sin, x1 * sin + x2 * cos], dim=-1)


class Block(torch.nn.Module):
    def __init__(self, d, heads, attention):
        super().__init__()
        hd, std = d // heads, init_std(d)
        self.heads, self.attention = heads, attention
        self.attn_norm, self.mlp_norm = RmsNorm(d), RmsNorm(d)
        self.q_norm, self.k_norm = RmsNorm(hd, gain=False), RmsNorm(hd, gain=False)
        # Q, K and V each orthogonal, side by side.
        self.w_qkv = torch.nn.Parameter(torch.cat([orthogonal((d, d), std) for _ in range(3)], 1))
        self.w_attn_out = zeros((d, d))
        self.w_in = orthogonal((d, 4 * d), std)
        self.w_mlp_out = zeros((4 * d, d))

    def attn(self, x, rope):
        b, t, d = x.shape
        h, hd = self.heads, d // self.heads
        qkv = (x @ self.w_qkv).view(b, t, 3, h, hd)
        q = rope.apply(self.q_norm(qkv[:, :, 0])).transpose(1, 2)
        k = rope.apply(self.k_norm(qkv[:, :, 1])).transpose(1, 2)
        v = qkv[:, :, 2].transpose(1, 2)
        if self.attention == "sdpa":
            mixed = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        else:
            scores = (q @ k.transpose(-1, -2)) / math.sqrt(hd)
            mask = torch.ones(t, t, dtype=torch.bool).triu(1)
            mixed = scores.masked_fill(mask, float("-inf")).softmax(-1) @ v
        return mixed.transpose(1, 2).reshape(b, t, d) @ self.w_attn_out

    def forward(self, x, rope):
        x = x + self.attn(self.attn_norm(x), rope)
        return x + F.relu(self.mlp_norm(x) @ self.w_in).square() @ self.w_mlp_out


def stack(n, d, heads, attention):
    return torch.nn.ModuleList(Block(d, heads, attention) for _ in range(n))


class Gpt(torch.nn.Module):
    def __init__(self, vocab, d, heads, layers, seq_len, attention):
        super().__init__()
        self.embedding = orthogonal((vocab, d), init_std(d))
        self.blocks = stack(layers, d, heads, attention)
        self.final_norm = RmsNorm(d)
        self.rope = Rope(d // heads, seq_len)

    def forward(self, ids):
        x = self.embedding[ids]
        for block in self.blocks:
            x = block(x, self.rope)
        return self.final_norm(x) @ self.embedding.t()  # tied head


class Looped(torch.nn.Module):
    """Prelude → prelude norm → diagonal injection + core, `loops` times → readout → coda."""

    def __init__(self, vocab, d, heads, n_pre, n_core, n_coda, loops, backprop, seq_len, attention):
        super().__init__()
        self.loops, self.backprop, self.std = loops, backprop, init_std(d)
        self.embedding = orthogonal((vocab, d), self.std)
        self.prelude = stack(n_pre, d, heads, attention)
        self.prelude_norm = RmsNorm(d)
        delta = -math.log(DEFAULT_DECAY) - MIN_DECAY_RATE
        self.a_log = torch.nn.Parameter(torch.zeros(d))
        self.dt_bias = torch.nn.Parameter(torch.full((d,), math.log(math.expm1(delta))))
        self.b = torch.nn.Parameter(torch.eye(d))
        self.core = stack(n_core, d, heads, attention)
        self.readout = orthogonal((d, d), self.std)
        self.coda = stack(n_coda, d, heads, attention)
        self.final_norm = RmsNorm(d)
        self.rope = Rope(d // heads, seq_len)

    def forward(self, ids):
        x = self.embedding[ids]
        for block in self.prelude:
            x = block(x, self.rope)
        e = self.prelude_norm(x)
        dt = F.softplus(self.dt_bias)
        decay = torch.exp(-(dt * self.a_log.clamp(-30, 30).exp() + MIN_DECAY_RATE))
        drive = (e @ self.b) * dt
        h = torch.nn.init.trunc_normal_(torch.empty_like(e), 0.0, self.std, -3 * self.std, 3 * self.std)
        for j in range(self.loops):
            h = h * decay + drive
            for block in self.core:
                h = block(h, self.rope)
            if j < self.loops - self.backprop:
                h = h.detach()
        x = h @ self.readout
        for block in self.coda:
            x = block(x, self.rope)
        return self.final_norm(x) @ self.embedding.t()  # tied head


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--arch", choices=["gpt", "looped"], required=True)
    ap.add_argument("--corpus", default="data/corpus/moby-dick.txt")
    ap.add_argument("--steps", type=int, default=16)
    ap.add_argument("--warmup-steps", type=int, default=1)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--attention", choices=["manual", "sdpa"], default="manual")
    ap.add_argument("--d-model", type=int, default=256)
    ap.add_argument("--heads", type=int, default=4)
    ap.add_argument("--seq-len", type=int, default=256)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--lr", type=float, default=3e-3)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--compile", action="store_true")
    ap.add_argument("--precision", choices=["fp32", "bf16"], default="fp32")
    a = ap.parse_args()

    torch.set_num_threads(a.threads)
    torch.manual_seed(a.seed)
    data = open(a.corpus, "rb").read()
    train = torch.frombuffer(bytearray(data[: len(data) - int(len(data) * 0.05)]), dtype=torch.uint8)
    if a.arch == "gpt":
        model = Gpt(256, a.d_model, a.heads, 6, a.seq_len, a.attention)
    else:
        model = Looped(256, a.d_model, a.heads, 2, 2, 2, 4, 2, a.seq_len, a.attention)

    # Decoupled weight decay on the blocks' matrices only; the embedding, gains, A_log, dt_bias,
    # B and C are not decayed (loopscale's parameter roles).
    no_decay = {"embedding", "a_log", "dt_bias", "b", "readout"}
    decay, keep = [], []
    for name, p in model.named_parameters():
        leaf = name.split(".")[-1]
        (keep if p.dim() < 2 or leaf in no_decay else decay).append(p)
    opt = torch.optim.AdamW(
        [{"params": decay, "weight_decay": 0.1}, {"params": keep, "weight_decay": 0.0}],
        lr=a.lr, betas=(0.9, 0.95), eps=1e-8,
    )
    forward = torch.compile(model) if a.compile else model
    autocast = torch.autocast("cpu", dtype=torch.bfloat16, enabled=a.precision == "bf16")
    gen = torch.Generator().manual_seed(a.seed + 1)
    losses, start = [], None
    for step in range(a.warmup_steps + a.steps):
        if step == a.warmup_steps:
            start = time.perf_counter()
        starts = torch.randint(0, len(train) - a.seq_len - 1, (a.batch,), generator=gen)
        windows = torch.stack([train[s : s + a.seq_len + 1] for s in starts.tolist()]).long()
        with autocast:
            logits = forward(windows[:, :-1])
        loss = F.cross_entropy(
            logits.float().reshape(-1, logits.shape[-1]), windows[:, 1:].reshape(-1)
        )
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        losses.append(loss.item())
    elapsed = time.perf_counter() - start
    tokens = a.steps * a.batch * a.seq_len
    print(json.dumps({
        "arch": a.arch,
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "attention": a.attention,
        "compile": a.compile,
        "precision": a.precision,
        "steps": a.steps,
        "seconds": elapsed,
        "tokens_per_second": tokens / elapsed,
        "losses": losses,
    }))


if __name__ == "__main__":
    main()
