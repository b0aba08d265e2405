"""Build the stand-in CogVLM2 checkpoint: ``python build_checkpoint.py OUT [--record-dir DIR]``.

Run with the CogVLM2 server environment's python (transformers 4.42): the checkpoint is saved
the way remote-code models are published (``register_for_auto_class``), so ``config.json``
gets an ``auto_map`` and the folder holds its own copy of ``modeling_cogvlm2_standin.py``; it
loads only with ``trust_remote_code=True``. Random weights, seeded; about 1 MB.
"""

from __future__ import annotations

import argparse
import json

import torch
from modeling_cogvlm2_standin import CogVLM2StandInConfig, CogVLMVideoForCausalLM
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import GenerationConfig, PreTrainedTokenizerFast

SPECIAL_TOKENS = ("<|begin_of_text|>", "<|end_of_text|>", "<|reserved_special_token_0|>")
BOS, EOS, PAD = SPECIAL_TOKENS
CORPUS = """\
A woman rides a bicycle through a park full of autumn leaves.
The camera follows a boat sailing across a calm lake in the morning light.
Several people dance in a crowded hall while colourful lights flash above them.
A man pours coffee into a white cup and then reads a newspaper at the table.
Please describe this video in detail. Question: Answer:
"""


def build_tokenizer() -> PreTrainedTokenizerFast:
    """A byte-level BPE trained on ``CORPUS``, with Llama 3's begin/end/reserved tokens."""
    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=400, special_tokens=list(SPECIAL_TOKENS),
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                  show_progress=False)
    bpe.train_from_iterator(CORPUS.splitlines(), trainer)
    return PreTrainedTokenizerFast(tokenizer_object=bpe, bos_token=BOS, eos_token=EOS,
                                   pad_token=PAD)


def build(out: str, record_dir: str | None, seed: int = 0) -> None:
    tokenizer = build_tokenizer()
    config = CogVLM2StandInConfig(
        vocab_size=len(tokenizer), hidden_size=64, intermediate_size=128,
        num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
        max_position_embeddings=4096, initializer_range=0.5, record_dir=record_dir,
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id)
    CogVLM2StandInConfig.register_for_auto_class()
    CogVLMVideoForCausalLM.register_for_auto_class("AutoModelForCausalLM")
    torch.manual_seed(seed)
    model = CogVLMVideoForCausalLM(config)
    # Single bytes and special tokens but EOS get zero output rows (logit 0, below the best
    # word piece): the random model writes words that decode to visible text.
    muted = [i for t, i in tokenizer.get_vocab().items() if len(t) == 1 or t in (BOS, PAD)]
    with torch.no_grad():
        model.lm_head.weight[muted] = 0
    model.generation_config = GenerationConfig(bos_token_id=config.bos_token_id,
                                               eos_token_id=config.eos_token_id)
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    with open(f"{out}/config.json") as file:
        auto_map = json.load(file)["auto_map"]
    print(json.dumps({"checkpoint": out, "auto_map": auto_map}))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out")
    parser.add_argument("--record-dir")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    build(args.out, args.record_dir, args.seed)
