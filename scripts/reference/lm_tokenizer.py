"""Fixture for tessera-lm's text tokenizer (lm/tests/tokenizer.rs).

Trains a tiny byte-level BPE with the `tokenizers` library, using the Llama 3 / Qwen2 style
regex pre-tokenizer (look-arounds, so the Rust side needs its fancy-regex backend), and records
the ids and decodings of a few strings.

Run: HF_HUB_OFFLINE=1 /work/refenv/bin/python scripts/reference/lm_tokenizer.py
"""
import json
import os

from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, processors, trainers

OUT = os.path.join(os.path.dirname(__file__), "..", "..", "lm", "tests", "fixtures", "tokenizer")
# The split pattern of Llama 3 and Qwen2 tokenizers.
PATTERN = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*"
    r"|\s*[\r\n]+|\s+(?!\S)|\s+"
)
CORPUS = [
    "The quick brown fox jumps over the lazy dog. It's 2025, and we'll tokenise speech!",
    "Sound becomes tokens; tokens become sound again.  Twice   spaced\ttabs\nnew lines.",
    "Zwölf Boxkämpfer jagen Viktor quer über den großen Sylter Deich — 12345 67890.",
] * 20
CASES = [
    "The lazy fox, it's 2025!",
    "Tokens   with  spaces\nand lines",
    "Zwölf Kämpfer — ünïcödé 😀",
    "",
]


def main():
    tok = Tokenizer(models.BPE(byte_fallback=False))
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(PATTERN), behavior="isolated", invert=False),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=320,
        special_tokens=["<|begin|>", "<|end|>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(CORPUS, trainer)
    begin = tok.token_to_id("<|begin|>")
    tok.post_processor = processors.TemplateProcessing(
        single="<|begin|> $A", special_tokens=[("<|begin|>", begin)]
    )
    os.makedirs(OUT, exist_ok=True)
    tok.save(os.path.join(OUT, "tokenizer.json"))
    cases = []
    for text in CASES:
        plain = tok.encode(text, add_special_tokens=False).ids
        special = tok.encode(text, add_special_tokens=True).ids
        cases.append(
            {
                "text": text,
                "ids": plain,
                "ids_with_special": special,
                "decoded": tok.decode(special, skip_special_tokens=True),
            }
        )
    with open(os.path.join(OUT, "expected.json"), "w") as f:
        json.dump({"vocab_size": tok.get_vocab_size(), "cases": cases}, f, indent=1, ensure_ascii=False)
    print(tok.get_vocab_size(), [len(c["ids"]) for c in cases])


if __name__ == "__main__":
    main()
