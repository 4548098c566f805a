"""The peer of `sweep bench --vs-transformers`: the same cases with Hugging Face transformers'
`generate()` on the same weights, printed as JSON on stdout.

    python scripts/bench_transformers.py --model DIR [--new-tokens 128] [--batch 32,64] ...

Needs `pip install torch transformers`. Every case generates the full length (end-of-text is
disabled), as `sweep bench` does. Case names match `sweep bench`'s (src/tools/bench.rs). Prints one
JSON line first (versions), then one JSON line per case as soon as it is measured, so a run
cut short still reports what it finished.
"""

import argparse
import json
import sys
import time

import torch
from transformers import GPT2LMHeadModel


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", required=True)
    ap.add_argument("--new-tokens", type=int, default=128)
    ap.add_argument("--batch", default="32", help="comma-separated rows of the sampling cases")
    ap.add_argument("--long-tokens", type=int, default=0)
    ap.add_argument("--long-prompt", type=int, default=0)
    ap.add_argument("--num-beams", type=int, default=8)
    ap.add_argument("--prefill-tokens", type=int, default=512)
    ap.add_argument("--grid-temperatures", default="0.7,0.9,1.0,1.2")
    ap.add_argument("--grid-top-k", default="0,10,50,200")
    ap.add_argument("--grid-samples", type=int, default=8)
    ap.add_argument("--cases", default="greedy,sample,beam,contrastive,grid,prefill,score", help="comma-separated kinds of case")
    ap.add_argument("--repeat", type=int, default=1, help="runs of each case; the fastest is reported")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--dtype", default="f32", choices=["f32", "f16", "bf16"])
    args = ap.parse_args()

    torch.manual_seed(0)
    dtype = {"f32": torch.float32, "f16": torch.float16, "bf16": torch.bfloat16}[args.dtype]
    try:
        model = GPT2LMHeadModel.from_pretrained(args.model, dtype=dtype)
    except TypeError:  # releases before 4.56 name it torch_dtype
        model = GPT2LMHeadModel.from_pretrained(args.model, torch_dtype=dtype)
    model = model.to(args.device).eval()
    print(json.dumps({"torch": torch.__version__, "threads": torch.get_num_threads(), "device": args.device}), flush=True)
    vocab = model.config.vocab_size
    model.generation_config.eos_token_id = None
    model.generation_config.pad_token_id = 0

    def prompt(n):
        return torch.tensor([[(i * 7919 + 13) % min(vocab, 50000) for i in range(n)]], device=args.device)

    p = prompt(16)

    def sync():
        if args.device.startswith("cuda"):
            torch.cuda.synchronize()

    def measure(case, fn):
        best = None
        for _ in range(max(1, args.repeat)):
            sync()
            start = time.perf_counter()
            tokens = fn()
            sync()
            seconds = time.perf_counter() - start
            if best is None or seconds < best[1]:
                best = (tokens, seconds)
        tokens, seconds = best
        print(json.dumps({"case": case, "tokens": tokens, "seconds": seconds, "tokens_per_s": tokens / seconds}), flush=True)

    def gen(n_rows, new_tokens=args.new_tokens, start=p, **kw):
        # What num_return_sequences does: the prompt repeated for every row.
        out = model.generate(
            start.repeat(n_rows, 1),
            attention_mask=torch.ones_like(start.repeat(n_rows, 1)),
            max_new_tokens=new_tokens,
            min_new_tokens=new_tokens,
            **kw,
        )
        return (out.shape[1] - start.shape[1]) * out.shape[0]

    with torch.inference_mode():
        model.generate(p, attention_mask=torch.ones_like(p), max_new_tokens=4, do_sample=True)  # warm-up
        cases = set(args.cases.split(","))
        batches = [int(b) for b in args.batch.split(",")]
        if "greedy" in cases:
            measure("greedy, batch 1", lambda: gen(1, do_sample=False))
        for b in batches if "sample" in cases else []:
            measure(
                f"sample T0.8 k50 p0.9, {b} x {args.new_tokens}",
                lambda: gen(b, do_sample=True, temperature=0.8, top_k=50, top_p=0.9),
            )
        if args.long_tokens and "sample" in cases:
            measure(
                f"sample T0.8 k50 p0.9, {batches[0]} x {args.long_tokens}",
                lambda: gen(batches[0], args.long_tokens, do_sample=True, temperature=0.8, top_k=50, top_p=0.9),
            )
        if args.long_prompt and "sample" in cases:
            measure(
                f"sample T0.8 k50 p0.9, {batches[0]} x {args.new_tokens}, prompt {args.long_prompt}",
                lambda: gen(
                    batches[0], start=prompt(args.long_prompt), do_sample=True, temperature=0.8, top_k=50, top_p=0.9
                ),
            )
        if "beam" in cases:
            measure(
                f"beam search, {args.num_beams} beams",
                lambda: gen(1, do_sample=False, num_beams=args.num_beams, early_stopping="never", length_penalty=0.0)
                * args.num_beams,
            )
        try:
            if "contrastive" in cases:
                measure(
                    "contrastive search, alpha 0.6 k 4",
                    lambda: gen(1, do_sample=False, penalty_alpha=0.6, top_k=4),
                )
        except Exception as e:  # built in up to transformers 4.55; later releases load it from the Hub
            print(f"contrastive search skipped: {type(e).__name__}: {e}".splitlines()[0], file=sys.stderr)
        temps = [float(t) for t in args.grid_temperatures.split(",")]
        ks = [int(k) for k in args.grid_top_k.split(",")]

        def grid():
            total = 0
            for t in temps:
                for k in ks:
                    total += gen(args.grid_samples, do_sample=True, temperature=t, top_k=k)
            return total

        # transformers runs one setting per generate() call: one after another.
        if "grid" in cases:
            measure(f"grid of {len(temps) * len(ks)} settings x {args.grid_samples} samples", grid)
        long = prompt(args.prefill_tokens)
        if "prefill" in cases:
            measure(f"prefill, {args.prefill_tokens} tokens", lambda: (model(long, logits_to_keep=1), long.shape[1])[1])

        # Teacher-forced scoring as a notebook does it (HF `evaluate`'s perplexity): prompt and
        # text in one batch, cross-entropy of every text token.
        rows, n = batches[0], args.new_tokens
        texts = torch.tensor(
            [[(r * 131 + i * 7919 + 29) % min(vocab, 50000) for i in range(n)] for r in range(rows)],
            device=args.device,
        )

        def score():
            ids = torch.cat([p.repeat(rows, 1), texts], dim=1)
            logits = model(ids).logits[:, p.shape[1] - 1 : -1]
            nll = torch.nn.functional.cross_entropy(logits.transpose(1, 2), texts, reduction="none")
            return nll.numel()

        if "score" in cases:
            measure(f"score {rows} texts x ({p.shape[1]} + {n}) tokens", score)


if __name__ == "__main__":
    main()
