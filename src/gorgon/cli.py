"""The `gorgon` command: generate text, serve it over HTTP, describe a model.

Mistakes a user can make end with one line on stderr and exit status 2, never a traceback.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence

from gorgon.config import SpecConfig
from gorgon.errors import GorgonError


def _model_options(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--model",
        default="default",
        help="'default' (SmolLM2-135M-Instruct, or $GORGON_MODEL), "
        "a GGUF file, or a Hugging Face checkpoint folder",
    )
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N (default: auto)")
    p.add_argument(
        "--dtype",
        default="auto",
        help="auto, float32, bfloat16 or float16 (default: bfloat16 on a GPU, float32 on the CPU)",
    )


def _spec_options(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("speculative decoding")
    g.add_argument("--method", choices=["plain", "ngram", "draft", "medusa", "eagle"], default="plain",
                   help="plain decoding, n-gram prompt lookup, a draft model, or trained heads")  # fmt: skip
    g.add_argument("--heads", default=None, help="medusa/eagle heads (path prefix; default: shipped ones)")
    g.add_argument("--num-speculative-tokens", "-k", type=int, default=4, help="drafted tokens per branch")
    g.add_argument("--num-branches", type=int, default=1, help="parallel branches under the root")
    g.add_argument(
        "--draft-model", default=None, help="draft checkpoint sharing the tokenizer (--method draft)"
    )
    g.add_argument("--draft-layers", type=int, default=None,
                   help="draft with the target's first N layers (no second checkpoint)")  # fmt: skip
    g.add_argument("--prompt-lookup-min", type=int, default=2)
    g.add_argument("--prompt-lookup-max", type=int, default=4)
    g.add_argument("--acceptance", choices=["lossless", "typical"], default="lossless",
                   help="typical: Medusa's typical acceptance (lossy)")  # fmt: skip
    g.add_argument("--eagle-top-k", type=int, default=None, help="eagle tree growth (default: the heads')")
    g.add_argument("--eagle-depth", type=int, default=None)
    g.add_argument("--eagle-total-tokens", type=int, default=None)
    g.add_argument("--eagle-draft-vocab", type=int, default=None,
                   help="eagle: draft over the heads' N most frequent tokens (0: all)")  # fmt: skip
    g.add_argument("--lookup", type=int, default=None,
                   help="medusa/eagle: also a prompt-lookup chain of N tokens (0: none)")  # fmt: skip


def spec_config(args: argparse.Namespace) -> SpecConfig | None:
    """The SpecConfig the command line asks for (None for plain decoding)."""
    if args.method == "plain":
        return None
    return SpecConfig(
        method=args.method,
        num_speculative_tokens=args.num_speculative_tokens,
        num_branches=args.num_branches,
        prompt_lookup_min=args.prompt_lookup_min,
        prompt_lookup_max=args.prompt_lookup_max,
        draft_model=args.draft_model,
        draft_layers=args.draft_layers,
        heads=args.heads,
        acceptance=args.acceptance,
        eagle_top_k=args.eagle_top_k,
        eagle_depth=args.eagle_depth,
        eagle_total_tokens=args.eagle_total_tokens,
        eagle_draft_vocab=args.eagle_draft_vocab,
        lookup=args.lookup,
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="gorgon", description="Speculative-decoding inference for Llama-family models."
    )
    sub = parser.add_subparsers(dest="command", required=True)

    gen = sub.add_parser("generate", help="stream a continuation of PROMPT to stdout, statistics to stderr")
    gen.add_argument("prompt", help="the prompt (sent through the chat template unless --raw)")
    _model_options(gen)
    gen.add_argument("--max-tokens", type=int, default=256)
    gen.add_argument("--temperature", type=float, default=0.0, help="0 is greedy (default)")
    gen.add_argument("--top-p", type=float, default=1.0)
    gen.add_argument("--top-k", type=int, default=0, help="0 disables it")
    gen.add_argument("--seed", type=int, default=None)
    gen.add_argument("--stop", action="append", default=[], help="stop at this string (repeatable)")
    gen.add_argument("--ignore-eos", action="store_true", help="keep going past end-of-sequence tokens")
    gen.add_argument("--raw", action="store_true", help="send the prompt as is, without the chat template")
    gen.add_argument("--no-cuda-graphs", action="store_true", help="run each step eagerly (debugging)")
    gen.add_argument("--json", action="store_true", help="print the statistics as JSON")
    _spec_options(gen)

    srv = sub.add_parser("serve", help="serve the OpenAI API, metrics and the live tree page over HTTP")
    _model_options(srv)
    _spec_options(srv)
    srv.add_argument("--host", default="127.0.0.1")
    srv.add_argument("--port", type=int, default=8000)
    srv.add_argument("--served-model-name", default=None, help="the model id clients use (default: --model)")
    srv.add_argument("--max-queue", type=int, default=64, help="waiting requests beyond which it answers 503")
    srv.add_argument("--max-batch", type=int, default=8, help="requests decoded together")
    srv.add_argument("--max-tokens", type=int, default=256, help="when a request gives no max_tokens")
    srv.add_argument("--baseline-tokens", type=int, default=32,
                     help="plain decoding tokens timed at start: the speedup's base (0: none)")  # fmt: skip

    info = sub.add_parser("info", help="print a model's configuration and where it was loaded from")
    _model_options(info)
    info.add_argument("--json", action="store_true")

    dis = sub.add_parser("distill", help="write self-distillation data: the model's answers to questions")
    _model_options(dis)
    dis.add_argument("--out", required=True, help="dataset file to write (.safetensors)")
    dis.add_argument("--prompts", default=None, help="JSONL ('prompt' or 'turns') or text file; default: "
                     "the model writes its own questions (Magpie)")  # fmt: skip
    dis.add_argument("--num-samples", type=int, default=1000)
    dis.add_argument("--batch-size", type=int, default=64)
    dis.add_argument("--max-tokens", type=int, default=256)
    dis.add_argument("--temperature", type=float, default=0.7)
    dis.add_argument("--seed", type=int, default=0)
    dis.add_argument("--tasks", type=int, default=0, help="then this many task prompts (summarise, "
                     "translate, answer from a passage) made from the answers, answered too")  # fmt: skip

    train = sub.add_parser("train", help="train Medusa heads or an EAGLE draft layer on distilled data")
    train.add_argument("kind", choices=["medusa", "eagle"])
    _model_options(train)
    train.add_argument("--data", required=True, help="dataset written by gorgon distill")
    train.add_argument("--out", required=True, help="path prefix for OUT.safetensors and OUT.json")
    train.add_argument("--epochs", type=float, default=2.0)
    train.add_argument("--lr", type=float, default=None, help="default: 1e-3 (medusa), 3e-4 (eagle)")
    train.add_argument("--tokens-per-batch", type=int, default=4096)
    train.add_argument("--eval-every", type=int, default=200)
    train.add_argument("--seed", type=int, default=0)
    train.add_argument("--max-seconds", type=float, default=None, help="stop training after this long")
    train.add_argument("--num-heads", type=int, default=4, help="medusa")
    train.add_argument("--num-layers", type=int, default=1, help="medusa: residual blocks per head")
    train.add_argument("--tree-size", type=int, default=32, help="medusa: nodes of the derived tree")
    train.add_argument("--top-k", type=int, default=8, help="eagle drafting")
    train.add_argument("--depth", type=int, default=5, help="eagle drafting")
    train.add_argument("--total-tokens", type=int, default=32, help="eagle drafting")
    train.add_argument("--init", default=None,
                       help="continue from these heads (path prefix; same kind, model, shape)")  # fmt: skip
    train.add_argument("--shuffle-seed", type=int, default=None,
                       help="batch order (default: --seed); give a continued run a new one")  # fmt: skip
    train.add_argument("--draft-vocab", type=int, default=8192,
                       help="eagle: draft over the data's N most frequent tokens (0: all)")  # fmt: skip
    train.add_argument("--unroll", type=int, default=1,
                       help="eagle: 1 = EAGLE-1; k > 1 adds passes on its own predictions")  # fmt: skip

    suites = "plain, spec, step, kernels, cost"
    bench = sub.add_parser("bench", add_help=False,
                           help=f"methods x prompts (gorgon bench --help), or a suite: {suites}")  # fmt: skip
    bench.add_argument("args", nargs=argparse.REMAINDER, help="the suite's options")

    heads = sub.add_parser("heads", help="print each draft head's top guesses after PROMPT")
    heads.add_argument("prompt")
    heads.add_argument("--kind", choices=["medusa", "eagle"], default="medusa")
    heads.add_argument(
        "--heads", default=None, help="path prefix of trained heads (default: the shipped ones)"
    )
    heads.add_argument("--top", type=int, default=5)
    heads.add_argument("--raw", action="store_true", help="no chat template")
    _model_options(heads)
    return parser


def cmd_generate(args: argparse.Namespace) -> int:
    from gorgon import LLM, RequestOutput, SamplingParams

    params = SamplingParams(
        max_tokens=args.max_tokens,
        temperature=args.temperature,
        top_p=args.top_p,
        top_k=args.top_k,
        seed=args.seed,
        stop=args.stop,
        ignore_eos=args.ignore_eos,
    )
    spec = spec_config(args)
    llm = LLM(model=args.model, device=args.device, dtype=args.dtype, cuda_graphs=not args.no_cuda_graphs,
              speculative=spec)  # fmt: skip
    chat = not args.raw and llm.tokenizer.chat_template is not None
    if not args.raw and not chat:
        print("gorgon: this model has no chat template; sending the prompt raw", file=sys.stderr)
    prompt = [{"role": "user", "content": args.prompt}] if chat else args.prompt
    result = None
    for event in llm.stream(prompt, params, chat=chat):
        if isinstance(event, RequestOutput):
            result = event
        elif event.text:
            sys.stdout.write(event.text)
            sys.stdout.flush()
    sys.stdout.write("\n")
    stats = dict(
        result.stats,
        finish_reason=result.finish_reason,
        device=str(llm.device),
        dtype=str(llm.dtype).removeprefix("torch."),
    )
    if args.json:
        print(json.dumps(stats), file=sys.stderr)
    else:
        print(
            f"[{stats['generated_tokens']} tokens, {stats['tokens_per_s']:.1f} tok/s "
            f"(decode {stats['decode_tokens_per_s']:.1f}), "
            f"first token {stats['time_to_first_token_s'] * 1e3:.0f} ms, "
            f"prompt {stats['prompt_tokens']} tokens, finish: {stats['finish_reason']}, "
            f"{stats['device']} {stats['dtype']}]",
            file=sys.stderr,
        )
        if spec is not None:
            rates = " ".join(f"{r:.2f}" for r in stats["acceptance_rate_per_position"])
            print(
                f"[{args.method}: {stats['steps']} steps, "
                f"accepted length (tau) {stats['accepted_length']:.2f}, "
                f"acceptance per position {rates}]",
                file=sys.stderr,
            )
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    from gorgon.serve.app import ServeConfig, serve

    if args.max_queue < 1 or args.max_batch < 1 or args.max_tokens < 1:
        raise GorgonError("--max-queue, --max-batch and --max-tokens must be >= 1")
    config = ServeConfig(model=args.model, device=args.device, dtype=args.dtype, spec=spec_config(args),
                         served_model_name=args.served_model_name, max_queue=args.max_queue,
                         max_batch=args.max_batch, baseline_tokens=args.baseline_tokens,
                         default_max_tokens=args.max_tokens)  # fmt: skip
    serve(config, args.host, args.port)
    return 0


def cmd_info(args: argparse.Namespace) -> int:
    from dataclasses import asdict

    from gorgon.model.weights import open_checkpoint

    ckpt = open_checkpoint(args.model)
    tok = ckpt.tokenizer()
    info = {
        "path": str(ckpt.path),
        "format": ckpt.format,
        "parameters": ckpt.config.num_params,
        "config": asdict(ckpt.config),
        "tokenizer": {
            "vocab_size": tok.vocab_size,
            "bos_token_id": tok.bos_token_id,
            "eos_token_ids": list(tok.eos_token_ids),
            "chat_template": tok.chat_template is not None,
        },
    }
    if args.json:
        print(json.dumps(info, indent=2))
        return 0
    print(f"path:        {info['path']}")
    print(f"format:      {info['format']}")
    print(f"parameters:  {info['parameters'] / 1e6:.1f}M")
    for key, value in info["config"].items():
        print(f"{key + ':':<22} {value}")
    for key, value in info["tokenizer"].items():
        print(f"{'tokenizer.' + key + ':':<22} {value}")
    return 0


def cmd_distill(args: argparse.Namespace) -> int:
    from gorgon import LLM
    from gorgon.train.distill import DistillConfig, distill

    llm = LLM(model=args.model, device=args.device, dtype=args.dtype)
    cfg = DistillConfig(num_samples=args.num_samples, prompts=args.prompts, batch_size=args.batch_size,
                        max_tokens=args.max_tokens, temperature=args.temperature, seed=args.seed,
                        tasks=args.tasks)  # fmt: skip
    data = distill(llm, cfg)
    data.save(args.out)
    print(f"{len(data)} conversations, {data.num_tokens} tokens -> {args.out}", file=sys.stderr)
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    from gorgon import LLM
    from gorgon.heads.base import save_head
    from gorgon.heads.eagle import EagleConfig
    from gorgon.train.data import TokenDataset
    from gorgon.train.heads import TrainConfig, train_eagle, train_medusa

    llm = LLM(model=args.model, device=args.device, dtype=args.dtype)
    data = TokenDataset.load(args.data)
    lr = args.lr or (1e-3 if args.kind == "medusa" else 3e-4)
    cfg = TrainConfig(epochs=args.epochs, lr=lr, tokens_per_batch=args.tokens_per_batch,
                      eval_every=args.eval_every, seed=args.seed, max_seconds=args.max_seconds,
                      shuffle_seed=args.shuffle_seed)  # fmt: skip
    init = _initial_heads(args.init, args.kind, llm.model) if args.init else None
    if args.kind == "medusa":
        module, config, report = train_medusa(
            llm.model, data, cfg, args.num_heads, args.num_layers, args.tree_size, init=init
        )
    else:
        drafting = EagleConfig(llm.config.hidden_size, args.top_k, args.depth, args.total_tokens)
        module, config, report = train_eagle(
            llm.model, data, cfg, drafting, unroll=args.unroll, draft_vocab=args.draft_vocab, init=init
        )
    final_loss = report.losses[-1] if report.losses else None
    config["training"] = {"data": str(args.data), "tokens": data.num_tokens, "epochs": args.epochs, "lr": lr,
                          "seed": args.seed, "final_loss": final_loss}  # fmt: skip
    if args.init:
        config["training"].update(init=str(args.init), shuffle_seed=args.shuffle_seed)
    save_head(args.out, module, config)
    acc = report.final
    top1 = " ".join(f"{a:.3f}" for a in acc["top1"])
    print(f"{args.kind}: held-out top-1 {top1} -> {args.out}.safetensors", file=sys.stderr)
    return 0


def _initial_heads(path: str, kind: str, model) -> dict:
    """The weights of earlier heads of this kind for this model, to continue training from."""
    from gorgon.heads.base import check_target, load_head

    state, config = load_head(path)
    if config.get("kind") != kind:
        raise GorgonError(f"{path} holds {config.get('kind')!r} heads, not {kind!r}", "init")
    check_target(config.get("target", {}), model, f"the heads at {path}")
    return state


def cmd_heads(args: argparse.Namespace) -> int:
    from gorgon import LLM
    from gorgon.heads.inspect import head_guesses

    llm = LLM(model=args.model, device=args.device, dtype=args.dtype)
    prompt = args.prompt
    if not args.raw and llm.tokenizer.chat_template:
        ids = llm.tokenizer.apply_chat_template([{"role": "user", "content": prompt}], tokenize=True)
    else:
        ids = llm.tokenizer.encode(prompt)
    for label, guesses in head_guesses(llm, ids, args.kind, args.heads, args.top):
        shown = "  ".join(f"{tok!r} {p:.3f}" for tok, p in guesses)
        print(f"{label}: {shown}")
    return 0


def cmd_bench(args: argparse.Namespace) -> int:
    import importlib

    suites = ("plain", "spec", "step", "kernels", "cost")
    if args.args and args.args[0] in suites:
        importlib.import_module(f"gorgon.bench.{args.args[0]}").main(args.args[1:])
    else:
        importlib.import_module("gorgon.bench.harness").main(args.args)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["bench"]:  # the suites parse their own options (argparse cannot pass "--x" through)
        try:
            return cmd_bench(argparse.Namespace(args=argv[1:]))
        except GorgonError as e:
            print(f"gorgon: error: {e}", file=sys.stderr)
            return 2
    args = build_parser().parse_args(argv)
    try:
        commands = {"generate": cmd_generate, "info": cmd_info, "distill": cmd_distill, "train": cmd_train,
                    "heads": cmd_heads, "bench": cmd_bench, "serve": cmd_serve}  # fmt: skip
        return commands[args.command](args)
    except GorgonError as e:
        print(f"gorgon: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
