"""The peer of `sweep bench --vs-transformers`: the same cases with Hugging Face transformers'
`generate()` on the same weights, printed as JSON on stdout.

    python scripts/bench_transformers.py --model DIR [--new-tokens 128] [--batch 32] ...

Needs `pip install torch transformers`. Every case generates the full length (end-of-text is
disabled), as `sweep bench` counts the tokens it really generated.
"""

import argparse
import json
import time

import torch
from transformers import GPT2LMHeadModel


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", required=True)
    ap.add_argument("--new-tokens", type=int, default=128)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--num-beams", type=int, default=8)
    ap.add_argument("--prefill-tokens", type=int, default=512)
    ap.add_argument("--grid-temperatures", default="0.7,0.9,1.0,1.2")
    ap.add_argument("--grid-top-k", default="0,10,50,200")
    ap.add_argument("--grid-samples", type=int, default=8)
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args()

    torch.manual_seed(0)
    model = GPT2LMHeadModel.from_pretrained(args.model, torch_dtype=torch.float32).to(args.device).eval()
    vocab = model.config.vocab_size
    model.generation_config.eos_token_id = None
    model.generation_config.pad_token_id = 0

    def prompt(n):
        return torch.tensor([[(i * 7919 + 13) % min(vocab, 50000) for i in range(n)]], device=args.device)

    p = prompt(16)
    results = []

    def sync():
        if args.device.startswith("cuda"):
            torch.cuda.synchronize()

    def measure(case, fn):
        sync()
        start = time.perf_counter()
        tokens = fn()
        sync()
        seconds = time.perf_counter() - start
        results.append({"case": case, "tokens": tokens, "seconds": seconds, "tokens_per_s": tokens / seconds})

    def gen(n_rows, **kw):
        out = model.generate(
            p.repeat(n_rows, 1),
            attention_mask=torch.ones_like(p.repeat(n_rows, 1)),
            max_new_tokens=args.new_tokens,
            min_new_tokens=args.new_tokens,
            **kw,
        )
        return (out.shape[1] - p.shape[1]) * out.shape[0]

    with torch.inference_mode():
        model.generate(p, attention_mask=torch.ones_like(p), max_new_tokens=4, do_sample=True)  # warm-up
        measure("greedy, batch 1", lambda: gen(1, do_sample=False))
        measure(
            f"sample T0.8 k50 p0.9, {args.batch} x {args.new_tokens}",
            lambda: gen(args.batch, do_sample=True, temperature=0.8, top_k=50, top_p=0.9),
        )
        measure(
            f"beam search, {args.num_beams} beams",
            lambda: gen(1, do_sample=False, num_beams=args.num_beams, early_stopping="never", length_penalty=0.0)
            * args.num_beams,
        )
        temps = [float(t) for t in args.grid_temperatures.split(",")]
        ks = [int(k) for k in args.grid_top_k.split(",")]

        def grid():
            total = 0
            for t in temps:
                for k in ks:
                    total += gen(args.grid_samples, do_sample=True, temperature=t, top_k=k)
            return total

        measure(f"grid of {len(temps) * len(ks)} settings x {args.grid_samples} samples, one after another", grid)
        long = prompt(args.prefill_tokens)
        measure(f"prefill, {args.prefill_tokens} tokens", lambda: (model(long), long.shape[1])[1])

    print(json.dumps({"torch": torch.__version__, "threads": torch.get_num_threads(), "results": results}))


if __name__ == "__main__":
    main()
