"""Write a tiny random-weight llama GGUF model that ``llama-server`` can serve in tests.

Random weights alone give replies that never end and are not valid UTF-8. Two tricks make the
model usable for protocol tests without any training:

* Hidden dimension ``BIAS_DIM`` is 1.0 in every token embedding and no layer reads or writes
  it, so after the final RMS norm it is a (nearly) constant positive value and the output
  matrix's column for it acts as a per-token logit bias.
* That bias pushes byte-fallback and control tokens far down (replies are printable ASCII) and
  the end-of-turn token and JSON closing characters up. Measured at temperature 0.8: free
  replies end after ~8 tokens (max 46 of 30), ``json_schema`` replies after ~28 (100/100
  schema-valid). At temperature 0 replies loop until ``max_tokens``: always set it.

Tune the ``BIAS_*`` constants for longer or shorter replies; the ``*_STD`` ones keep the bias
reliable (see the comment there).

The vocabulary is a SentencePiece ("llama") one: control tokens, 256 byte-fallback tokens, the
printable ASCII characters (space spelled "▁" as SPM requires) and a few merges.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import gguf
import numpy as np
import numpy.typing as npt

N_EMBD = 64
N_LAYER = 2
N_HEAD = 4
N_HEAD_KV = 2
N_FF = 128
N_CTX = 2048
HEAD_DIM = N_EMBD // N_HEAD
# The constant hidden dimension; any index works, the last one keeps the others contiguous.
BIAS_DIM = N_EMBD - 1

UNK, BOS, EOS_SPM, IM_START, IM_END = 0, 1, 2, 3, 4
CONTROL_TOKENS = ("<unk>", "<s>", "</s>", "<|im_start|>", "<|im_end|>")
SPM_SPACE = "\u2581"  # "▁": SentencePiece's spelling of a space inside tokens

# A few multi-character pieces so the SPM merge path is exercised, as with real vocabularies.
MERGES = (
    SPM_SPACE * 2,
    SPM_SPACE * 4,
    f"{SPM_SPACE}t",
    f"{SPM_SPACE}a",
    f"{SPM_SPACE}s",
    "th",
    "he",
    "in",
    "er",
    "an",
    "re",
    "on",
    "es",
    "st",
    "en",
    "at",
    "or",
    "nd",
    "ing",
    "the",
    f"{SPM_SPACE}the",
    "ion",
    "ed",
    "is",
)

# ChatML, the format the gateway's local models typically use; llama.cpp also recognises it
# without --jinja because of the <|im_start|> marker.
CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)

# Logit biases, in logits (_tensors divides them by NORMED_BIAS_DIM). Printable tokens get 0.
BIAS_FORBIDDEN = -40.0  # byte-fallback and control tokens: never sampled
BIAS_END_OF_TURN = 2.0  # <|im_end|>: free-form replies end after roughly 10 tokens
BIAS_CLOSERS = {'"': 2.0, "]": 1.0, "}": 2.5}  # strings, arrays and objects close soon
BIAS_DISCOURAGED = {"\\": -6.0, SPM_SPACE: -1.0}  # fewer escapes and grammar whitespace

# Weight scales. The residual stream must stay dominated by the constant dimension: RMS norm
# divides by rms(x), so with the other 63 dims small (std ~0.06 after both layers) the constant
# dim normalises to ~8/sqrt(1 + 63 * 0.06**2) ~ 7.2 at every position, and the biases come out
# near their nominal values. Hence small embeddings and small layer *output* projections; the
# layer inputs and the output matrix carry the randomness that makes replies vary.
EMBD_STD = 0.04
LAYER_IN_STD = 0.3
LAYER_OUT_STD = 0.003
OUTPUT_STD = 0.3
NORMED_BIAS_DIM = 7.2

FloatArray = npt.NDArray[np.float32]


def build_vocab() -> tuple[list[str], list[float], list[int]]:
    """Return the token texts, SPM scores and token types of the tiny vocabulary."""
    tokens: list[str] = list(CONTROL_TOKENS)
    types: list[int] = [int(gguf.TokenType.UNKNOWN)] + [int(gguf.TokenType.CONTROL)] * 4
    tokens += [f"<0x{byte:02X}>" for byte in range(256)]
    types += [int(gguf.TokenType.BYTE)] * 256
    for code in range(0x20, 0x7F):
        tokens.append(SPM_SPACE if code == 0x20 else chr(code))
        types.append(int(gguf.TokenType.NORMAL))
    tokens += MERGES
    types += [int(gguf.TokenType.NORMAL)] * len(MERGES)
    # SPM merges the adjacent pair whose merged piece has the highest score, so single
    # characters score lowest and earlier merges win over later ones.
    scores = [0.0] * len(tokens)
    first_merge = len(tokens) - len(MERGES)
    for index in range(first_merge):
        scores[index] = -1000.0
    for rank, index in enumerate(range(first_merge, len(tokens))):
        scores[index] = -float(rank + 1)
    return tokens, scores, types


def _token_biases(tokens: list[str], types: list[int]) -> FloatArray:
    biases = np.zeros(len(tokens), dtype=np.float32)
    for index, (text, kind) in enumerate(zip(tokens, types, strict=True)):
        if kind != int(gguf.TokenType.NORMAL):
            biases[index] = BIAS_FORBIDDEN
        biases[index] += BIAS_CLOSERS.get(text, 0.0) + BIAS_DISCOURAGED.get(text, 0.0)
    biases[IM_END] = BIAS_END_OF_TURN
    return biases


def _tensors(seed: int, tokens: list[str], types: list[int]) -> dict[str, FloatArray]:
    """Return all weights, numpy shapes (out_features, in_features) as gguf expects."""
    rng = np.random.default_rng(seed)

    def normal(*shape: int, std: float) -> FloatArray:
        return rng.normal(0.0, std, size=shape).astype(np.float32)

    n_vocab = len(tokens)
    kv_dim = N_HEAD_KV * HEAD_DIM
    embd = normal(n_vocab, N_EMBD, std=EMBD_STD)
    embd[:, BIAS_DIM] = 1.0
    tensors: dict[str, FloatArray] = {"token_embd.weight": embd}
    for layer in range(N_LAYER):
        weights = {
            "attn_q": normal(N_EMBD, N_EMBD, std=LAYER_IN_STD),
            "attn_k": normal(kv_dim, N_EMBD, std=LAYER_IN_STD),
            "attn_v": normal(kv_dim, N_EMBD, std=LAYER_IN_STD),
            "attn_output": normal(N_EMBD, N_EMBD, std=LAYER_OUT_STD),
            "ffn_gate": normal(N_FF, N_EMBD, std=LAYER_IN_STD),
            "ffn_up": normal(N_FF, N_EMBD, std=LAYER_IN_STD),
            "ffn_down": normal(N_EMBD, N_FF, std=LAYER_OUT_STD),
        }
        # The layers neither read the constant dimension (zero input columns) nor write it
        # (zero output rows), so it reaches the output norm as exactly 1.0.
        for name in ("attn_q", "attn_k", "attn_v", "ffn_gate", "ffn_up"):
            weights[name][:, BIAS_DIM] = 0.0
        for name in ("attn_output", "ffn_down"):
            weights[name][BIAS_DIM, :] = 0.0
        for name, value in weights.items():
            tensors[f"blk.{layer}.{name}.weight"] = value
        tensors[f"blk.{layer}.attn_norm.weight"] = np.ones(N_EMBD, dtype=np.float32)
        tensors[f"blk.{layer}.ffn_norm.weight"] = np.ones(N_EMBD, dtype=np.float32)
    tensors["output_norm.weight"] = np.ones(N_EMBD, dtype=np.float32)
    output = normal(n_vocab, N_EMBD, std=OUTPUT_STD)
    output[:, BIAS_DIM] = _token_biases(tokens, types) / NORMED_BIAS_DIM
    tensors["output.weight"] = output
    return tensors


def write_tiny_model(path: Path, seed: int = 0) -> Path:
    """Write the tiny llama GGUF (a few hundred KB) to ``path`` and return ``path``.

    The same ``seed`` always gives the same file. Generation takes well under a second.
    """
    tokens, scores, types = build_vocab()
    path.parent.mkdir(parents=True, exist_ok=True)
    writer: Any = gguf.GGUFWriter(str(path), arch="llama")
    try:
        writer.add_name("codereview-tiny-test-model")
        writer.add_context_length(N_CTX)
        writer.add_embedding_length(N_EMBD)
        writer.add_block_count(N_LAYER)
        writer.add_feed_forward_length(N_FF)
        writer.add_head_count(N_HEAD)
        writer.add_head_count_kv(N_HEAD_KV)
        writer.add_rope_dimension_count(HEAD_DIM)
        writer.add_rope_freq_base(10000.0)
        writer.add_layer_norm_rms_eps(1e-5)
        writer.add_vocab_size(len(tokens))
        writer.add_file_type(int(gguf.LlamaFileType.ALL_F32))
        writer.add_tokenizer_model("llama")
        writer.add_token_list(tokens)
        writer.add_token_scores(scores)
        writer.add_token_types(types)
        writer.add_unk_token_id(UNK)
        writer.add_bos_token_id(BOS)
        writer.add_eos_token_id(IM_END)
        writer.add_eot_token_id(IM_END)
        writer.add_add_bos_token(True)
        writer.add_add_eos_token(False)
        # With a leading "▁" added, the grammar's prefill of partial JSON tokenises differently
        # from what the model produced, and constrained decoding breaks.
        writer.add_add_space_prefix(False)
        writer.add_chat_template(CHAT_TEMPLATE)
        for name, tensor in _tensors(seed, tokens, types).items():
            writer.add_tensor(name, tensor)
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_tensors_to_file()
    finally:
        writer.close()
    return path


if __name__ == "__main__":
    target = Path(sys.argv[1] if len(sys.argv) > 1 else "tiny.gguf")
    print(write_tiny_model(target))
