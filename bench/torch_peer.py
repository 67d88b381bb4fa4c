"""PyTorch peer of `deno task bench --peer`: the same measurements, driven line by line.

Reads one JSON command per line on stdin and answers one JSON line on stdout, so the caller can
alternate rounds between its own backend and this process. Threads are pinned by the caller
through OMP_NUM_THREADS / OPENBLAS_NUM_THREADS / MKL_NUM_THREADS (torch.set_num_threads alone
does not pin the BLAS); `torch.set_num_threads` is set to the same count here.

The GPT-2 is written out here as Hugging Face's `GPT2LMHeadModel` computes it in eager mode
(Conv1D projections as addmm, tanh GELU, unfused attention with the causal mask applied by
`torch.where` and an additive padding mask, a full-position tied LM head, and the shifted
cross-entropy with ignore_index -100); prefix-tuning as Li & Liang's code builds the past
(embedding [L, C] -> Linear(C, mid) -> tanh -> Linear(mid, n_layer*2*C)) with the GPT-2 frozen.

Commands (all answer {"ok": true, ...} or {"ok": false, "error": "..."}):
  {"cmd": "info"}
  {"cmd": "matmul", "m":, "k":, "n":, "transB":, "reps":}      -> {"ms": best of reps}
  {"cmd": "model", "nLayer":, "nHead":, "nEmbd":, "vocab":, "nPositions":, "seed":}
  {"cmd": "step_setup", "mode": "prefix"|"fine", "ids":, "labels":, "mask":, "prefixLen":, "mid":}
  {"cmd": "step"}                                                  -> {"ms":, "loss":}
  {"cmd": "decode", "prompt":, "beams":, "newTokens":}             -> {"prefillMs":, "perTokenMs":, "tokens":}
  {"cmd": "rss"}                                                   -> {"peakRssMiB":}
  {"cmd": "quit"}
"""

import json
import math
import os
import resource
import sys
import time

import torch
import torch.nn.functional as F

torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
torch.set_grad_enabled(False)


class Conv1D(torch.nn.Module):
    """Hugging Face's Conv1D: y = x @ W + b with W [in, out]."""

    def __init__(self, nin, nout, g):
        super().__init__()
        self.weight = torch.nn.Parameter(torch.randn(nin, nout, generator=g) * 0.02)
        self.bias = torch.nn.Parameter(torch.zeros(nout))

    def forward(self, x):
        shape = x.shape[:-1] + (self.weight.shape[1],)
        return torch.addmm(self.bias, x.reshape(-1, x.shape[-1]), self.weight).view(shape)


def gelu_new(x):
    return 0.5 * x * (1.0 + torch.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * torch.pow(x, 3.0))))


class Block(torch.nn.Module):
    def __init__(self, C, H, nPos, g):
        super().__init__()
        self.H = H
        self.ln_1 = torch.nn.LayerNorm(C)
        self.c_attn = Conv1D(C, 3 * C, g)
        self.attn_proj = Conv1D(C, C, g)
        self.ln_2 = torch.nn.LayerNorm(C)
        self.c_fc = Conv1D(C, 4 * C, g)
        self.mlp_proj = Conv1D(4 * C, C, g)
        self.register_buffer(
            "bias", torch.tril(torch.ones(nPos, nPos, dtype=torch.bool)).view(1, 1, nPos, nPos)
        )
        self.masked_bias = torch.tensor(-1e4)

    def split(self, x):
        B, T, C = x.shape
        return x.view(B, T, self.H, C // self.H).permute(0, 2, 1, 3)

    def attn(self, x, past, amask):
        q, k, v = self.c_attn(x).split(x.shape[-1], dim=2)
        q, k, v = self.split(q), self.split(k), self.split(v)
        if past is not None:
            k = torch.cat((past[0], k), dim=-2)
            v = torch.cat((past[1], v), dim=-2)
        present = (k, v)
        w = torch.matmul(q, k.transpose(-1, -2)) / (v.size(-1) ** 0.5)
        qlen, klen = q.size(-2), k.size(-2)
        causal = self.bias[:, :, klen - qlen : klen, :klen]
        w = torch.where(causal, w, torch.finfo(w.dtype).min * torch.ones((), dtype=w.dtype))
        if amask is not None:
            w = w + amask
        w = F.softmax(w, dim=-1)
        a = torch.matmul(w, v)
        B, H, T, D = a.shape
        a = a.permute(0, 2, 1, 3).contiguous().view(B, T, H * D)
        return self.attn_proj(a), present

    def forward(self, x, past, amask):
        a, present = self.attn(self.ln_1(x), past, amask)
        x = x + a
        x = x + self.mlp_proj(gelu_new(self.c_fc(self.ln_2(x))))
        return x, present


class GPT2(torch.nn.Module):
    def __init__(self, nLayer, nHead, C, vocab, nPos, seed):
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.wte = torch.nn.Parameter(torch.randn(vocab, C, generator=g) * 0.02)
        self.wpe = torch.nn.Parameter(torch.randn(nPos, C, generator=g) * 0.01)
        self.h = torch.nn.ModuleList([Block(C, nHead, nPos, g) for _ in range(nLayer)])
        self.ln_f = torch.nn.LayerNorm(C)
        self.nLayer, self.nHead, self.C = nLayer, nHead, C

    def forward(self, ids, past=None, mask=None, positions=None):
        B, T = ids.shape
        pl = 0 if past is None else past[0][0].size(-2)
        if positions is None:
            positions = torch.arange(pl, pl + T).unsqueeze(0)
        x = F.embedding(ids, self.wte) + F.embedding(positions, self.wpe)
        amask = None
        if mask is not None:
            amask = (1.0 - mask[:, None, None, :].to(x.dtype)) * torch.finfo(x.dtype).min
        presents = []
        for i, blk in enumerate(self.h):
            x, pr = blk(x, None if past is None else past[i], amask)
            presents.append(pr)
        x = self.ln_f(x)
        return torch.matmul(x, self.wte.t()), presents  # the full-position tied LM head


class Prefix(torch.nn.Module):
    def __init__(self, L, nLayer, nHead, C, mid, seed):
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.L, self.nLayer, self.nHead, self.C = L, nLayer, nHead, C
        self.wte = torch.nn.Parameter(torch.randn(L, C, generator=g))
        self.l1 = torch.nn.Linear(C, mid)
        self.l2 = torch.nn.Linear(mid, nLayer * 2 * C)

    def forward(self, B):
        x = self.l2(torch.tanh(self.l1(self.wte)))  # [L, nLayer*2*C]
        x = x.unsqueeze(0).expand(B, -1, -1).reshape(B, self.L, self.nLayer * 2, self.nHead, -1)
        x = x.permute(2, 0, 3, 1, 4).split(2)  # per layer [2, B, H, L, D]
        return [(p[0], p[1]) for p in x]


state = {}


def peak_rss_mib():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def handle(c):
    cmd = c["cmd"]
    if cmd == "info":
        return {
            "torch": torch.__version__,
            "threads": torch.get_num_threads(),
            "env": {k: os.environ.get(k) for k in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_CORETYPE")},
        }
    if cmd == "matmul":
        m, k, n = c["m"], c["k"], c["n"]
        g = torch.Generator().manual_seed(1)
        a = torch.rand(m, k, generator=g) - 0.5
        b = torch.rand(n, k, generator=g) - 0.5 if c["transB"] else torch.rand(k, n, generator=g) - 0.5
        bb = b.t() if c["transB"] else b
        torch.matmul(a, bb)
        best = math.inf
        for _ in range(c.get("reps", 3)):
            t0 = time.perf_counter()
            torch.matmul(a, bb)
            best = min(best, (time.perf_counter() - t0) * 1e3)
        return {"ms": best}
    if cmd == "model":
        state.clear()
        state["model"] = GPT2(c["nLayer"], c["nHead"], c["nEmbd"], c["vocab"], c["nPositions"], c.get("seed", 0))
        return {}
    if cmd == "step_setup":
        model = state["model"]
        ids = torch.tensor(c["ids"], dtype=torch.long)
        labels = torch.tensor(c["labels"], dtype=torch.long)
        mask = torch.tensor(c["mask"], dtype=torch.float32)
        if c["mode"] == "prefix":
            for p in model.parameters():
                p.requires_grad_(False)
            model.eval()
            prefix = Prefix(c["prefixLen"], model.nLayer, model.nHead, model.C, c["mid"], 3)
            params = list(prefix.parameters())
            mask = torch.cat((torch.ones(ids.shape[0], c["prefixLen"]), mask), dim=1)
        else:
            for p in model.parameters():
                p.requires_grad_(True)
            model.train()
            prefix = None
            params = list(model.parameters())
        opt = torch.optim.AdamW(params, lr=1e-5)
        B, T = ids.shape
        pl = c["prefixLen"] if prefix else 0
        positions = torch.arange(pl, pl + T).unsqueeze(0)

        def step():
            with torch.enable_grad():
                past = prefix(B) if prefix is not None else None
                logits, _ = model(ids, past, mask, positions)
                shift = logits[..., :-1, :].contiguous()
                loss = F.cross_entropy(shift.view(-1, shift.size(-1)), labels[..., 1:].contiguous().view(-1), ignore_index=-100)
                loss.backward()
            opt.step()
            opt.zero_grad(set_to_none=True)
            return loss.item()

        state["step"] = step
        return {"trainable": sum(p.numel() for p in params)}
    if cmd == "step":
        t0 = time.perf_counter()
        loss = state["step"]()
        return {"ms": (time.perf_counter() - t0) * 1e3, "loss": loss}
    if cmd == "decode":
        return decode(state["model"], c["prompt"], c["beams"], c["newTokens"])
    if cmd == "rss":
        return {"peakRssMiB": peak_rss_mib()}
    raise ValueError(f"unknown command {cmd}")


def decode(model, prompt, nb, new_tokens):
    """Beam search with a KV cache, as Hugging Face's (no EOS): top 2·nb over nb × vocab of
    summed log-probs, the best nb continue, the cache rows reordered by index_select."""
    model.eval()
    t0 = time.perf_counter()
    ids = torch.tensor([prompt], dtype=torch.long)
    logits, past = model(ids)
    past = [(k.expand(nb, -1, -1, -1).contiguous(), v.expand(nb, -1, -1, -1).contiguous()) for k, v in past]
    last = logits[:, -1, :].expand(nb, -1)
    scores = torch.full((nb,), -1e9)
    scores[0] = 0
    prefill = (time.perf_counter() - t0) * 1e3
    V = last.size(-1)
    pos = len(prompt)
    out = []
    t1 = time.perf_counter()
    for g in range(new_tokens):
        lp = F.log_softmax(last, dim=-1) + scores[:, None]
        top, idx = torch.topk(lp.view(-1), 2 * nb)
        top, idx = top[:nb], idx[:nb]
        beam, tok = idx // V, idx % V
        scores = top
        out.append(tok.tolist())
        if g == new_tokens - 1:
            break
        past = [(k.index_select(0, beam), v.index_select(0, beam)) for k, v in past]
        logits, past = model(tok.view(nb, 1), past, None, torch.full((1, 1), pos))
        pos += 1
        last = logits[:, -1, :]
    per = (time.perf_counter() - t1) * 1e3 / max(1, new_tokens - 1)
    return {"prefillMs": prefill, "perTokenMs": per, "tokens": out}


def main():
    for line in sys.stdin:
        line = line.strip()
        if not line:
            continue
        c = json.loads(line)
        if c.get("cmd") == "quit":
            break
        try:
            r = handle(c)
            r["ok"] = True
        except Exception as e:  # report to the caller, keep serving
            r = {"ok": False, "error": f"{type(e).__name__}: {e}"}
        sys.stdout.write(json.dumps(r) + "\n")
        sys.stdout.flush()


if __name__ == "__main__":
    main()
