"""Build radscribe-tiny's tokenizer from the report corpus (offline, deterministic).

    python -m radscribe.models.build_tokenizer --data ../shared/data --out src/radscribe/models/assets/radscribe-tokenizer.json
"""

from __future__ import annotations

import argparse
import hashlib
from pathlib import Path

from radscribe.data.manifest import atomic_write
from radscribe.models.tokenizer import DEFAULT_VOCAB_SIZE, build_tokenizer, tokenizer_corpus


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, required=True, help="shared data folder (iu-xray-reports/, vqa-rad/)")
    parser.add_argument("--out", type=Path, required=True, help="tokenizer.json to write")
    parser.add_argument("--vocab-size", type=int, default=DEFAULT_VOCAB_SIZE)
    parser.add_argument("--extra", type=Path, nargs="*", default=[], help="more text files, one text per line")
    args = parser.parse_args(argv)
    extra = [line for path in args.extra for line in path.read_text(encoding="utf-8").splitlines()]
    corpus = tokenizer_corpus(args.data, extra)
    tokenizer = build_tokenizer(corpus, vocab_size=args.vocab_size)
    text = tokenizer.to_str(pretty=True)
    with atomic_write(args.out) as handle:
        handle.write(text)
    digest = hashlib.sha256(text.encode()).hexdigest()[:16]
    print(f"{args.out}: {tokenizer.get_vocab_size()} tokens from {len(corpus)} texts (sha256 {digest})")


if __name__ == "__main__":
    main()
