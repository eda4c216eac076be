"""A PyTorch trainer for loopscale's command backend (docs/trainer-protocol.md).

A second, independent implementation of loopscale's runs: the pre-norm GPT and the looped model
(prelude -> core applied per sequence n ~ Poisson(mu) times with the add, linear or diagonal
injection and truncated backprop -> coda), AdamW with decoupled decay on hidden matrices, the
sweep's cosine or trapezoid schedule, global-norm clipping, random byte windows of the training
split (bytes of the text, or the token shards loopscale hands over in `token_segments`: BPE
tokens of a text, already tokenized and cached by loopscale, or `data.tokens` shards),
evaluations on the same validation windows as loopscale, and test-time loop counts for
looped models, in either init (model.init: "scaled-zero", the Parcae reference's, or "gpt2") with
model.rope_base, model.norm_eps, model.qk_norm_gain and train.decay_embeddings / adam_eps as
loopscale reads them; train.optimizer = "muon" is refused. It reads the run's config.json, appends rows to the metrics file, checkpoints
into the run's directory (every train.checkpoint_every steps and on SIGINT) and resumes from
there. Runs on CPU or CUDA.

    train.py --config CONFIG --metrics METRICS --run-dir RUN_DIR [--threads N] [--device auto|cpu|cuda]
"""

import argparse
import json
import math
import os
import signal
import sys
import time

import torch
import torch.nn.functional as F

INIT_STD = 0.02  # init = "gpt2"
# The model-wide settings of the run (model.init, model.norm_eps, model.rope_base,
# model.qk_norm_gain), set once from the configuration before the model is built.
RECIPE = {"init": "scaled-zero", "eps": 1e-5, "rope_base": 50_000.0, "qk_gain": False}
DEFAULT_DECAY = 0.447
MIN_DECAY_RATE = 1e-4

# The configuration keys this trainer implements; any other key set to a non-default value
# is refused, so that a run is never silently trained with a different recipe.
KNOWN = {
    "data": {"corpus", "tokenizer", "seq_len", "val_fraction", "tokens", "val_tokens", "vocab_size"},
    "train": {
        "tokens", "flops", "batch_size", "lr", "schedule", "warmup_fraction", "cooldown_fraction",
        "min_lr_fraction", "weight_decay", "decay_embeddings", "beta1", "beta2", "adam_eps",
        "optimizer", "muon_lr", "muon_momentum", "muon_momentum_start", "muon_momentum_warmup",
        "muon_weight_decay", "grad_clip", "eval_every", "eval_tokens", "log_every",
        "checkpoint_every", "backend", "command", "precision",
    },
    "model": {
        "arch", "d_model", "n_heads", "n_layers", "mlp", "mlp_ratio", "tie_embeddings", "init",
        "rope_base", "norm_eps", "qk_norm_gain", "looped",
    },
    "looped": {
        "n_prelude", "n_core", "n_coda", "recurrent_dim", "injection", "mean_recurrence",
        "backprop_depth", "depth_sampling", "state_init", "prelude_norm", "test_loops",
    },
}


# ---------------------------------------------------------------------------------------------
# The networks


class RmsNorm(torch.nn.Module):
    def __init__(self, dim, gain=True):
        super().__init__()
        self.gain = torch.nn.Parameter(torch.ones(dim)) if gain else None

    def forward(self, x):
        x = x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + RECIPE["eps"])
        return x if self.gain is None else x * self.gain


def normal(gen, shape, std):
    return torch.nn.Parameter(torch.randn(*shape, generator=gen) * std)


def truncated_normal(shape, gen, std):
    """N(0, std²) truncated to ±3σ (redrawn), the recurrent state's init ("like-init")."""
    x = torch.randn(shape, generator=gen)
    bad = x.abs() > 3
    while bad.any():
        x[bad] = torch.randn(int(bad.sum()), generator=gen)
        bad = x.abs() > 3
    return x * std


def init_std(d):
    """Entry scale of a width-d model's matrices: √(2/(5d)) for scaled-zero, 0.02 for gpt2."""
    return math.sqrt(2 / (5 * d)) if RECIPE["init"] == "scaled-zero" else INIT_STD


def orthogonal(gen, shape, std):
    """A random orthogonal matrix with entries of standard deviation `std` (QR of a Gaussian,
    signs fixed so it is Haar-distributed)."""
    rows, cols = shape
    a = torch.randn(max(shape), min(shape), generator=gen, dtype=torch.float64)
    q, r = torch.linalg.qr(a)
    q = q * torch.sign(torch.diagonal(r))
    q = q if rows >= cols else q.t()
    return torch.nn.Parameter((q * std * math.sqrt(max(shape))).float())


def matrix(gen, shape, std):
    """An input-side matrix as the init says: orthogonal (scaled-zero) or Gaussian (gpt2)."""
    return orthogonal(gen, shape, std) if RECIPE["init"] == "scaled-zero" else normal(gen, shape, std)


class Rope(torch.nn.Module):
    def __init__(self, head_dim, max_len):
        super().__init__()
        half = head_dim // 2
        inv_freq = RECIPE["rope_base"] ** (-(torch.arange(half, dtype=torch.float64) * 2) / head_dim)
        angles = torch.arange(max_len, dtype=torch.float64)[:, None] * inv_freq[None, :]
        self.register_buffer("cos", angles.cos().float()[:, None, :], persistent=False)
        self.register_buffer("sin", angles.sin().float()[:, None, :], persistent=False)

    def forward(self, x):  # (b, t, h, hd), rotate-half convention
        t, half = x.shape[1], x.shape[-1] // 2
        cos, sin = self.cos[:t], self.sin[:t]
        x1, x2 = x[..., :half], x[..., half:]
        return torch.cat([x1 * cos - x2 * sin, x1 * sin + x2 * cos], dim=-1)


class Block(torch.nn.Module):
    """Pre-norm: x + attn(norm(x)) with QK-norm and RoPE, then x + mlp(norm(x))."""

    def __init__(self, gen, d, heads, mlp, mlp_ratio, out_std):
        """`out_std` None: output projections start at zero (each block is the identity)."""
        super().__init__()
        hd, std = d // heads, init_std(d)
        self.heads, self.mlp = heads, mlp
        self.attn_norm, self.mlp_norm = RmsNorm(d), RmsNorm(d)
        self.q_norm, self.k_norm = RmsNorm(hd, RECIPE["qk_gain"]), RmsNorm(hd, RECIPE["qk_gain"])
        if RECIPE["init"] == "scaled-zero":  # Q, K and V each orthogonal
            self.w_qkv = torch.nn.Parameter(torch.cat([orthogonal(gen, (d, d), std) for _ in range(3)], 1))
        else:
            self.w_qkv = normal(gen, (d, 3 * d), std)
        out = (lambda shape: torch.nn.Parameter(torch.zeros(*shape))) if out_std is None else (
            lambda shape: normal(gen, shape, out_std))
        self.w_attn_out = out((d, d))
        hidden = mlp_ratio * d if mlp != "swiglu" else round(2 * mlp_ratio * d / 3)
        self.w_in = matrix(gen, (d, hidden), std)
        self.w_gate = matrix(gen, (d, hidden), std) if mlp == "swiglu" else None
        self.w_mlp_out = out((hidden, d))

    def attn(self, x, rope):
        b, t, d = x.shape
        h, hd = self.heads, d // self.heads
        qkv = (x @ self.w_qkv).view(b, t, 3, h, hd)
        q = rope(self.q_norm(qkv[:, :, 0])).transpose(1, 2)
        k = rope(self.k_norm(qkv[:, :, 1])).transpose(1, 2)
        v = qkv[:, :, 2].transpose(1, 2)
        mixed = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        return mixed.transpose(1, 2).reshape(b, t, d) @ self.w_attn_out

    def forward(self, x, rope):
        x = x + self.attn(self.attn_norm(x), rope)
        pre = self.mlp_norm(x) @ self.w_in
        if self.mlp == "relu2":
            hidden = F.relu(pre).square()
        elif self.mlp == "gelu":
            hidden = F.gelu(pre, approximate="tanh")
        else:
            hidden = F.silu(pre) * (self.mlp_norm(x) @ self.w_gate)
        return x + hidden @ self.w_mlp_out


def stack(gen, m, d, n, depth):
    out_std = None if RECIPE["init"] == "scaled-zero" else INIT_STD / math.sqrt(2 * max(depth, 1))
    return torch.nn.ModuleList(
        Block(gen, d, m["n_heads"], m["mlp"], m["mlp_ratio"], out_std) for _ in range(n)
    )


class Head(torch.nn.Module):
    """Final norm and LM head: the transposed embedding when tied."""

    def __init__(self, gen, d, vocab, tied):
        super().__init__()
        self.final_norm = RmsNorm(d)
        self.untied = None if tied else matrix(gen, (d, vocab), init_std(d))

    def forward(self, x, embedding):
        w = embedding.t() if self.untied is None else self.untied
        return self.final_norm(x) @ w


class Gpt(torch.nn.Module):
    def __init__(self, gen, m, vocab, seq_len):
        super().__init__()
        d = m["d_model"]
        self.embedding = matrix(gen, (vocab, d), init_std(d))
        self.blocks = stack(gen, m, d, m["n_layers"], m["n_layers"])
        self.head = Head(gen, d, vocab, m["tie_embeddings"])
        self.rope = Rope(d // m["n_heads"], seq_len)

    def forward(self, ids, plan=None, h0=None):
        x = self.embedding[ids]
        for block in self.blocks:
            x = block(x, self.rope)
        return self.head(x, self.embedding)


class Looped(torch.nn.Module):
    """Prelude -> (prelude norm) -> injection + core per loop -> readout C -> coda."""

    def __init__(self, gen, m, vocab, seq_len):
        super().__init__()
        lc = m["looped"]
        d = m["d_model"]
        r = lc.get("recurrent_dim") or d
        self.lc, self.r = lc, r
        depth = lc["n_prelude"] + lc["n_core"] * lc["mean_recurrence"] + lc["n_coda"]
        self.state_std = init_std(d)  # the recurrent state's init: the embedding's std
        self.embedding = matrix(gen, (vocab, d), init_std(d))
        self.prelude = stack(gen, m, d, lc["n_prelude"], depth)
        self.prelude_norm = RmsNorm(d) if lc["prelude_norm"] else None
        self.injection = lc["injection"]
        if self.injection == "diagonal":
            delta = -math.log(DEFAULT_DECAY) - MIN_DECAY_RATE
            self.a_log = torch.nn.Parameter(torch.zeros(r))
            self.dt_bias = torch.nn.Parameter(torch.full((r,), math.log(math.expm1(delta))))
            self.b = torch.nn.Parameter(torch.eye(d, r))
        elif self.injection == "add":
            self.b = torch.nn.Parameter(torch.eye(d, r)) if r != d else None
        else:  # linear: W = [W_h; W_e], starting as the additive injection plus noise
            w = torch.cat([torch.eye(r, r), torch.eye(d, r)])
            self.w = torch.nn.Parameter(w + torch.randn(r + d, r, generator=gen) * init_std(d))
        self.core = stack(gen, m, r, lc["n_core"], depth)
        # C: orthogonal × √(2/5) (scaled-zero), or the identity (gpt2).
        if RECIPE["init"] == "scaled-zero":
            self.readout = orthogonal(gen, (r, d), init_std(d))
        else:
            self.readout = torch.nn.Parameter(torch.eye(r, d))
        self.coda = stack(gen, m, d, lc["n_coda"], depth)
        self.head = Head(gen, d, vocab, m["tie_embeddings"])
        self.rope = Rope(d // m["n_heads"], seq_len)
        self.core_rope = Rope(r // m["n_heads"], seq_len)

    def forward(self, ids, depths, backprop, h0):
        """`depths[i]` loops for sequence i, aligned at their end; gradients through the last
        min(max depth, backprop) loops only (earlier loops run and detach)."""
        x = self.embedding[ids]
        for block in self.prelude:
            x = block(x, self.rope)
        e = self.prelude_norm(x) if self.prelude_norm is not None else x
        if self.injection == "diagonal":
            dt = F.softplus(self.dt_bias)
            state_map = lambda h: h * torch.exp(-(dt * self.a_log.clamp(-30, 30).exp() + MIN_DECAY_RATE))  # noqa: E731
            drive = (e @ self.b) * dt
        elif self.injection == "add":
            state_map = lambda h: h  # noqa: E731
            drive = e if self.b is None else e @ self.b
        else:
            w_h, w_e = self.w[: self.r], self.w[self.r:]
            state_map = lambda h: h @ w_h  # noqa: E731
            drive = e @ w_e
        n = int(depths.max())
        first_graph = n - min(n, backprop)
        h = h0
        for j in range(n):
            stepped = state_map(h) + drive
            for block in self.core:
                stepped = block(stepped, self.core_rope)
            active = (depths >= n - j)[:, None, None]
            h = torch.where(active, stepped, h)
            if j < first_graph:
                h = h.detach()
        x = h @ self.readout
        for block in self.coda:
            x = block(x, self.rope)
        return self.head(x, self.embedding)


# ---------------------------------------------------------------------------------------------
# Training


def lr_multiplier(t, step, total):
    """loopscale's schedule (crates/train/src/schedule.rs): linear warmup, then cosine or trapezoid."""
    total = max(total, 1)
    step = min(step, total - 1)
    warmup = round(t["warmup_fraction"] * total)
    if step < warmup:
        return (step + 1) / warmup
    floor, last = t["min_lr_fraction"], total - 1
    if t["schedule"] == "cosine":
        if last <= warmup:
            return 1.0
        progress = (step - warmup) / (last - warmup)
        return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * progress))
    cooldown = min(round(t["cooldown_fraction"] * total), total - warmup)
    start = total - cooldown
    if step < start or cooldown == 0:
        return 1.0
    return 1 - (1 - floor) * (step + 1 - start) / cooldown


class TokenSegments:
    """A split as loopscale describes it in config.json's `token_segments`: ids `start ..
    start + len` of each shard file (`width` bytes each, little-endian, after `offset` header
    bytes), memory-mapped, so a large dataset costs only the pages drawn. Windows of seq + 1
    ids never cross a segment's end; window i counts through the segments in order, as
    loopscale's sampler does."""

    def __init__(self, segments, seq):
        import mmap
        self.seq, self.parts = seq, []
        for s in segments:
            with open(s["path"], "rb") as f:
                mm = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
            lo = s["offset"] + s["start"] * s["width"]
            ids = memoryview(mm)[lo: lo + s["len"] * s["width"]].cast("H" if s["width"] == 2 else "I")
            self.parts.append(ids)
        self.counts = [max(len(p) - seq, 0) for p in self.parts]
        self.windows = sum(self.counts)

    def window(self, i):
        """Window i: seq + 1 ids, a list of ints."""
        for ids, n in zip(self.parts, self.counts):
            if i < n:
                return ids[i: i + self.seq + 1].tolist()
            i -= n
        raise IndexError(f"window {i} past the split's {self.windows}")

    def eval_starts(self, n_windows):
        last = self.windows - 1
        return [0] if n_windows == 1 else [i * last // (n_windows - 1) for i in range(n_windows)]


def check_keys(cfg, defaults_ok):
    unknown = []
    for table in ("data", "train", "model"):
        unknown += [f"{table}.{k}" for k in cfg[table] if k not in KNOWN[table]]
    looped = cfg["model"].get("looped") or {}
    unknown += [f"model.{k}" for k in looped if k not in KNOWN["looped"]]
    if unknown and not defaults_ok:
        sys.exit(f"torch_trainer: these keys are not implemented here: {', '.join(unknown)}")
    for k in unknown:
        print(f"torch_trainer: warning: key {k} is not implemented, ignored", file=sys.stderr)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", required=True)
    ap.add_argument("--metrics", required=True)
    ap.add_argument("--run-dir", required=True)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    ap.add_argument("--allow-unknown-keys", action="store_true",
                    help="warn about configuration keys this trainer does not implement instead of refusing the run")
    a = ap.parse_args()

    meta = json.load(open(a.config))
    cfg = meta["config"]
    check_keys(cfg, a.allow_unknown_keys)
    d_cfg, t, m = cfg["data"], cfg["train"], cfg["model"]
    if t.get("optimizer", "adamw") != "adamw":
        sys.exit(f"torch_trainer: train.optimizer = {t['optimizer']!r} is not implemented here (adamw only)")
    RECIPE.update(
        init=m.get("init", "scaled-zero"),
        eps=m.get("norm_eps", 1e-5),
        rope_base=m.get("rope_base", 50_000.0),
        qk_gain=m.get("qk_norm_gain", False),
    )
    segments = meta.get("token_segments")
    if d_cfg["tokenizer"] != "bytes" and not segments:
        sys.exit(f"torch_trainer: tokenizer {d_cfg['tokenizer']!r} needs loopscale's token_segments (a newer loopscale)")
    device = torch.device("cuda" if a.device == "cuda" or (a.device == "auto" and torch.cuda.is_available()) else "cpu")
    torch.set_num_threads(max(a.threads, 1))
    seed, seq, batch = cfg["seed"], d_cfg["seq_len"], t["batch_size"]
    steps, vocab = meta["steps"], meta["vocab_size"]
    fpt = meta["train_flops_per_token"]

    if segments:
        train_split = TokenSegments(segments["train"], seq)
        val_split = TokenSegments(segments["val"], seq)
    else:
        data = open(meta["corpus_path"], "rb").read()
        n_val = math.floor(len(data) * d_cfg["val_fraction"])
        train_tokens = torch.frombuffer(bytearray(data[: len(data) - n_val]), dtype=torch.uint8)
        val_tokens = torch.frombuffer(bytearray(data[len(data) - n_val:]), dtype=torch.uint8)

    gen = torch.Generator().manual_seed(seed)
    looped = m["arch"] == "looped"
    model = (Looped if looped else Gpt)(gen, m, vocab, seq).to(device)
    lc = m.get("looped") or {}
    backprop = max(lc.get("backprop_depth") or math.ceil(lc.get("mean_recurrence", 1) / 2), 1)

    # Decoupled weight decay on the blocks' matrices and the linear injection's W; on the
    # embedding and an untied head only with train.decay_embeddings; never on norms, A_log,
    # dt_bias, B or C (loopscale's parameter roles).
    no_decay = {"a_log", "dt_bias", "b", "gain", "readout"}
    if not t.get("decay_embeddings", False):
        no_decay |= {"embedding", "untied"}
    decay, keep = [], []
    for name, p in model.named_parameters():
        (keep if name.split(".")[-1] in no_decay or p.dim() < 2 else decay).append(p)
    opt = torch.optim.AdamW(
        [{"params": decay, "weight_decay": t["weight_decay"]}, {"params": keep, "weight_decay": 0.0}],
        lr=t["lr"], betas=(t["beta1"], t["beta2"]), eps=t.get("adam_eps", 1e-8),
    )

    # Validation windows: loopscale's evenly spaced starts over the validation split.
    n_windows = max(-(-t["eval_tokens"] // seq), 1)
    if segments:
        val = torch.tensor([val_split.window(i) for i in val_split.eval_starts(n_windows)]).long().to(device)
    else:
        last_start = len(val_tokens) - seq - 1
        starts = [0] if n_windows == 1 else [i * last_start // (n_windows - 1) for i in range(n_windows)]
        val = torch.stack([val_tokens[s: s + seq + 1] for s in starts]).long().to(device)

    def logits_at(ids, loops):
        if not looped:
            return model(ids)
        h0_gen = torch.Generator().manual_seed(seed ^ 0x5EED)
        h0 = torch.zeros(ids.shape[0], ids.shape[1], model.r)
        if lc["state_init"] == "random":
            h0 = truncated_normal(h0.shape, h0_gen, model.state_std)
        depths = torch.full((ids.shape[0],), loops, device=device)
        return model(ids, depths, loops, h0.to(device))

    @torch.no_grad()
    def evaluate(loops):
        model.eval()
        total, count = 0.0, 0
        for chunk in val.split(batch):
            logits = logits_at(chunk[:, :-1], loops)
            loss = F.cross_entropy(logits.reshape(-1, vocab), chunk[:, 1:].reshape(-1), reduction="sum")
            total, count = total + loss.item(), count + chunk[:, 1:].numel()
        model.train()
        return total / count

    # Resume from our own checkpoint, if an earlier attempt left one.
    ckpt_path = os.path.join(a.run_dir, "torch_ckpt.pt")
    done = 0
    if os.path.exists(ckpt_path):
        state = torch.load(ckpt_path, map_location=device)
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        done = state["step"]
        print(f"torch_trainer: resuming at step {done}/{steps}", file=sys.stderr)

    def save_checkpoint(step):
        tmp = ckpt_path + ".tmp"
        torch.save({"model": model.state_dict(), "optimizer": opt.state_dict(), "step": step}, tmp)
        os.replace(tmp, ckpt_path)

    stop = []
    signal.signal(signal.SIGINT, lambda *_: stop.append(True))
    metrics = open(a.metrics, "a")

    def row(**fields):
        print(json.dumps(fields), file=metrics, flush=True)

    # train.precision = "bf16": autocast's bf16 matmuls, fp32 weights and optimizer state (what
    # loopscale's built-in trainer does); evaluation stays fp32, as there.
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=t.get("precision", "fp32") == "bf16")
    started = time.perf_counter()
    for step in range(done, steps):
        if stop:
            save_checkpoint(step)
            print(f"torch_trainer: stopped at step {step}, checkpointed", file=sys.stderr)
            sys.exit(130)
        # Each step's windows and depths from a generator keyed by (seed, step): a resumed run
        # draws what the uninterrupted one would have.
        g = torch.Generator().manual_seed((seed * 1_000_003 + step) % 2**63)
        if segments:
            window_starts = torch.randint(0, train_split.windows, (batch,), generator=g)
            windows = torch.tensor([train_split.window(i) for i in window_starts.tolist()]).long().to(device)
        else:
            window_starts = torch.randint(0, len(train_tokens) - seq - 1, (batch,), generator=g)
            windows = torch.stack([train_tokens[s: s + seq + 1] for s in window_starts.tolist()]).long().to(device)
        if looped:
            mu = lc["mean_recurrence"]
            if lc["depth_sampling"] == "poisson":
                depths = torch.poisson(torch.full((batch,), float(mu)), generator=g).long().clamp(min=1)
            else:
                depths = torch.full((batch,), mu)
            h0 = torch.zeros(batch, seq, model.r)
            if lc["state_init"] == "random":
                h0 = truncated_normal(h0.shape, g, model.state_std)
            extra = (depths.to(device), backprop, h0.to(device))
        else:
            extra = ()
        with autocast:
            logits = model(windows[:, :-1], *extra)
        loss = F.cross_entropy(logits.float().reshape(-1, vocab), windows[:, 1:].reshape(-1))
        lr = t["lr"] * lr_multiplier(t, step, steps)
        for group in opt.param_groups:
            group["lr"] = lr
        opt.zero_grad(set_to_none=True)
        loss.backward()
        clip = t["grad_clip"] if t["grad_clip"] > 0 else float("inf")
        grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), clip).item()
        opt.step()
        done = step + 1
        value = loss.item()
        is_last = done == steps
        if is_last or (t["log_every"] > 0 and done % t["log_every"] == 0) or not math.isfinite(value):
            row(step=done, tokens=done * batch * seq, train_loss=value, lr=lr, grad_norm=grad_norm,
                elapsed_seconds=time.perf_counter() - started)
        if not math.isfinite(value):
            sys.exit(f"torch_trainer: training loss {value} at step {done}")
        if is_last or (t["eval_every"] > 0 and done % t["eval_every"] == 0):
            row(step=done, val_loss=evaluate(lc.get("mean_recurrence", 1)))
        every = t["checkpoint_every"]
        if not is_last and every > 0 and done % every == 0:
            save_checkpoint(done)

    final = evaluate(lc.get("mean_recurrence", 1))
    for loops in lc.get("test_loops", []) if looped else []:
        row(step=done, val_loss=evaluate(loops), test_loops=loops)
    row(final={"val_loss": final})


if __name__ == "__main__":
    main()
