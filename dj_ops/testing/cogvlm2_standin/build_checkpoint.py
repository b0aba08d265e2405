"""Build the stand-in CogVLM2 checkpoint: ``python build_checkpoint.py OUT [--record-dir DIR]``.

Run with the CogVLM2 server environment's python (transformers 4.42): the checkpoint is saved
the way remote-code models are published (``register_for_auto_class``), so ``config.json``
gets an ``auto_map`` (``configuration_cogvlm.CogVLMConfig``,
``modeling_cogvlm.CogVLMVideoForCausalLM``, as the real one) and no ``model_type``, and the
folder holds its own copies of the two files; it loads only with ``trust_remote_code=True``.

The tokenizer has Llama 3's layout: 128000 ordinary tokens (a byte-level BPE trained on a few
sentences, then filler words), then 256 special tokens (``<|begin_of_text|>`` 128000,
``<|end_of_text|>`` 128001, ``<|reserved_special_token_0|>`` 128002, ...), so the pad id the
real code sets, 128002, is in the vocabulary. Random weights, seeded; about 35 MB.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import GenerationConfig, PreTrainedTokenizerFast

# The stand-in is imported as a package (its modelling file imports its configuration
# relatively, as the real one does), from the folder holding it.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from dj_ops_cogvlm2_server.compat import provide_functional_tensor  # noqa: E402

provide_functional_tensor()  # the modelling file imports pytorchvideo
from cogvlm2_standin.configuration_cogvlm import CogVLMConfig  # noqa: E402
from cogvlm2_standin.modeling_cogvlm import CogVLMVideoForCausalLM  # noqa: E402

ORDINARY_TOKENS = 128000  # Llama 3: ids below are ordinary, the 256 above special
SPECIAL_TOKENS = ["<|begin_of_text|>", "<|end_of_text|>",
                  *(f"<|reserved_special_token_{i}|>" for i in range(254))]
BOS, EOS = SPECIAL_TOKENS[:2]
CORPUS = """\
A woman rides a bicycle through a park full of autumn leaves.
The camera follows a boat sailing across a calm lake in the morning light.
Several people dance in a crowded hall while colourful lights flash above them.
A man pours coffee into a white cup and then reads a newspaper at the table.
Please describe this video in detail. Question: Answer:
""" + "\n".join(str(i) for i in range(100))  # frame indices: one token each, as Llama 3's


def build_tokenizer() -> PreTrainedTokenizerFast:
    """A byte-level BPE trained on ``CORPUS``, padded with filler words (which no text encodes
    to) up to 128000 ids, then Llama 3's 256 special tokens."""
    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=600, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    bpe.train_from_iterator(CORPUS.splitlines() * 3, trainer)
    spec = json.loads(bpe.to_str())
    vocab = spec["model"]["vocab"]
    vocab.update({f"\u0120zq{i}": i for i in range(len(vocab), ORDINARY_TOKENS)})
    bpe = Tokenizer.from_str(json.dumps(spec))
    bpe.add_special_tokens(SPECIAL_TOKENS)
    return PreTrainedTokenizerFast(tokenizer_object=bpe, bos_token=BOS, eos_token=EOS)


def build(out: str, record_dir: str | None, seed: int = 0) -> None:
    tokenizer = build_tokenizer()
    config = CogVLMConfig(
        vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64,
        num_hidden_layers=2, num_attention_heads=2, num_key_value_heads=1,
        max_position_embeddings=2048, rope_theta=500000.0, initializer_range=0.5,
        record_dir=record_dir, bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id, pad_token_id=128002)
    CogVLMConfig.register_for_auto_class()
    CogVLMVideoForCausalLM.register_for_auto_class("AutoModelForCausalLM")
    torch.manual_seed(seed)
    model = CogVLMVideoForCausalLM(config)
    # Only the corpus's word pieces and EOS keep output rows (the others' logit is 0, below
    # the best word piece): the random model writes words that decode to visible text.
    kept = {i for t, i in tokenizer.get_vocab().items()
            if i < ORDINARY_TOKENS and len(t) > 1 and not t.startswith("\u0120zq")}
    muted = [i for i in range(len(tokenizer)) if i not in kept | {tokenizer.eos_token_id}]
    with torch.no_grad():
        model.lm_head.weight[muted] = 0
    model.generation_config = GenerationConfig(bos_token_id=config.bos_token_id,
                                               eos_token_id=config.eos_token_id)
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    with open(f"{out}/config.json") as file:
        saved = json.load(file)
    print(json.dumps({"checkpoint": out, "auto_map": saved["auto_map"],
                      "model_type": saved.get("model_type")}))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out")
    parser.add_argument("--record-dir")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    build(args.out, args.record_dir, args.seed)
