#!/usr/bin/env python3
"""Writes a GGUF model of a real model's shapes with random weights, for speed measurements where
the real weights cannot be fetched (no model hub from the machines here).

  scripts/random-gguf.py qwen2.5-7b OUT.gguf   # Qwen2.5-7B's shapes, the Q4_K_M mix (about 4.4 GB)
  scripts/random-gguf.py tiny OUT.gguf         # the same architecture, small (a check of this script)
  scripts/random-gguf.py tiny OUT.gguf --chat-template T.jinja --control '[TOOL_CALLS]'
      # with a chat template, and control tokens of that text (tests of a family's chat syntax)
  scripts/random-gguf.py nomic-bert OUT.gguf  # an embedding model: nomic-embed-text-v1.5's width
      # (768) and context (2048), two layers, f16, a WordPiece vocabulary (BERT's special ids)
  scripts/random-gguf.py bert-reranker OUT.gguf  # a BERT cross-encoder with a classifier head
      # (rank pooling), small

The weights are quantized blocks with random quants and small fixed scales, in the types llama.cpp's
Q4_K_M recipe gives each tensor (Q6_K for the output, and for attn_v and ffn_down of the layers it
gives more bits; Q4_K for the rest; norms and biases in f32). The tokenizer is a SentencePiece-style
vocabulary of the model's size: the special tokens, the 256 byte tokens, then short letter strings,
so that any text tokenizes. Standard library only.
"""

import itertools
import os
import string
import struct
import sys

PRESETS = {
    # Qwen2.5-7B-Instruct's config.json.
    "qwen2.5-7b": dict(layers=28, embd=3584, ff=18944, heads=28, kv_heads=4, vocab=152064, ctx=32768),
    "tiny": dict(layers=2, embd=256, ff=512, heads=4, kv_heads=2, vocab=4096, ctx=2048),
    # nomic-embed-text-v1.5's width and context, two of its twelve layers.
    "nomic-bert": dict(arch="nomic-bert", pooling=1, layers=2, embd=768, ff=3072, heads=12, vocab=1024, ctx=2048),
    # A cross-encoder reranker of BGE-reranker-base's kind (BERT with a classifier head), small.
    "bert-reranker": dict(arch="bert", pooling=4, layers=2, embd=384, ff=1536, heads=12, vocab=1024, ctx=512),
}

F32, F16, Q4_K, Q6_K = 0, 1, 12, 14
# (bytes per block of 256 values, where the f16 scales sit, and their values).
BLOCK = {Q4_K: 144, Q6_K: 210}
ALIGN = 32


def f16(x):
    return struct.pack("<e", x)


def gguf_string(s):
    b = s.encode()
    return struct.pack("<Q", len(b)) + b


def kv_value(v):
    """A metadata value: its GGUF type and bytes."""
    if isinstance(v, bool):
        return 7, struct.pack("<?", v)
    if isinstance(v, int):
        return 4, struct.pack("<I", v)
    if isinstance(v, float):
        return 6, struct.pack("<f", v)
    if isinstance(v, str):
        return 8, gguf_string(v)
    kind, items = v
    if kind == "str":
        return 9, struct.pack("<IQ", 8, len(items)) + b"".join(gguf_string(s) for s in items)
    if kind == "f32":
        return 9, struct.pack("<IQ", 6, len(items)) + struct.pack(f"<{len(items)}f", *items)
    if kind == "i32":
        return 9, struct.pack("<IQ", 5, len(items)) + struct.pack(f"<{len(items)}i", *items)
    raise ValueError(kind)


def vocabulary(n, control=()):
    tokens = ["<unk>", "<s>", "</s>"] + list(control) + [f"<0x{b:02X}>" for b in range(256)]
    types = [2, 3, 3] + [3] * len(control) + [6] * 256
    letters = string.ascii_lowercase
    words = ("".join(p) for length in (1, 2, 3) for p in itertools.product(letters, repeat=length))
    for w in words:
        for t in ("\u2581" + w, w):
            if len(tokens) < n:
                tokens.append(t)
                types.append(1)
    while len(tokens) < n:
        tokens.append(f"\u2581w{len(tokens)}")
        types.append(1)
    first = 259 + len(control)
    scores = [0.0] * first + [-float(i) for i in range(n - first)]
    return tokens[:n], scores[:n], types[:n]


def more_bits(layer, layers):
    """llama-quantize's use_more_bits: the first and last eighth of the layers, and every third."""
    return layer < layers // 8 or layer >= 7 * layers // 8 or (layer - layers // 8) % 3 == 2


def tensors(p):
    """(name, dims with the row length first, type) of each tensor, in llama.cpp's order."""
    e, kv = p["embd"], p["embd"] // p["heads"] * p["kv_heads"]
    out = [("token_embd.weight", (e, p["vocab"]), Q4_K)]
    for i in range(p["layers"]):
        big = Q6_K if more_bits(i, p["layers"]) else Q4_K
        out += [
            (f"blk.{i}.attn_norm.weight", (e,), F32),
            (f"blk.{i}.attn_q.weight", (e, e), Q4_K),
            (f"blk.{i}.attn_q.bias", (e,), F32),
            (f"blk.{i}.attn_k.weight", (e, kv), Q4_K),
            (f"blk.{i}.attn_k.bias", (kv,), F32),
            (f"blk.{i}.attn_v.weight", (e, kv), big),
            (f"blk.{i}.attn_v.bias", (kv,), F32),
            (f"blk.{i}.attn_output.weight", (e, e), Q4_K),
            (f"blk.{i}.ffn_norm.weight", (e,), F32),
            (f"blk.{i}.ffn_gate.weight", (e, p["ff"]), Q4_K),
            (f"blk.{i}.ffn_up.weight", (e, p["ff"]), Q4_K),
            (f"blk.{i}.ffn_down.weight", (p["ff"], e), big),
        ]
    out += [("output_norm.weight", (e,), F32), ("output.weight", (e, p["vocab"]), Q6_K)]
    return out


def nbytes(dims, ty):
    n = 1
    for d in dims:
        n *= d
    if ty in (F32, F16):
        return n * (4 if ty == F32 else 2)
    return n // 256 * BLOCK[ty]


def data(name, dims, ty):
    size = nbytes(dims, ty)
    if ty == F32:
        value = 1.0 if name.endswith("norm.weight") else 0.0
        return struct.pack("<f", value) * (size // 4)
    if ty == F16:
        # Random halves of magnitude 2^-9 to 2^-6, either sign: a random low byte (mantissa) and
        # a high byte (sign, exponent 7 to 9 of bias 15, two mantissa bits) mapped from random.
        high = bytes((b & 0x80) | ((9 - (b >> 2) % 3) << 2) | (b & 3) for b in range(256))
        buf = bytearray(size)
        buf[0::2] = os.urandom(size // 2)
        buf[1::2] = os.urandom(size // 2).translate(high)
        return buf
    buf = bytearray(os.urandom(size))
    blocks = size // BLOCK[ty]
    # Small fixed scales: quants times scales stay small, so activations stay finite.
    if ty == Q4_K:  # d, dmin first
        for at, byte in enumerate(f16(2.0**-14) + f16(2.0**-14)):
            buf[at::144] = bytes([byte]) * blocks
    else:  # Q6_K: d last
        for at, byte in enumerate(f16(2.0**-16)):
            buf[208 + at :: 210] = bytes([byte]) * blocks
    return buf


def wordpiece_vocabulary(n):
    """BERT's special tokens at BERT's ids ([PAD] 0, [UNK] 100, [CLS] 101, [SEP] 102, [MASK] 103),
    then word starts (llama.cpp writes them with a leading \u2581) and word pieces of letters,
    digits and punctuation, so that any ASCII text tokenizes."""
    tokens = ["[PAD]"] + [f"[unused{i}]" for i in range(99)] + ["[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    types = [3] + [5] * 99 + [2, 3, 3, 3]
    chars = string.ascii_lowercase + string.digits + string.punctuation
    pieces = ["\u2581" + c for c in chars] + list(chars)
    pairs = ("".join(p) for p in itertools.product(string.ascii_lowercase, repeat=2))
    for t in itertools.chain(pieces, (start + w for w in pairs for start in ("\u2581", ""))):
        if len(tokens) < n:
            tokens.append(t)
            types.append(1)
    assert len(tokens) == n, f"a vocabulary of {n} needs more pieces"
    return tokens, types


def encoder_tensors(p):
    """A BERT-family encoder's tensors: nomic-bert (fused QKV, SwiGLU, rotary positions) or bert
    (separate Q, K, V with biases, GELU, learned positions), and a reranker's classifier head."""
    e, ff, nomic = p["embd"], p["ff"], p["arch"] == "nomic-bert"
    out = [("token_embd.weight", (e, p["vocab"]), F16), ("token_types.weight", (e, 2), F32)]
    if not nomic:
        out.append(("position_embd.weight", (e, p["ctx"]), F16))
    out += [("token_embd_norm.weight", (e,), F32), ("token_embd_norm.bias", (e,), F32)]
    for i in range(p["layers"]):
        b = f"blk.{i}."
        if nomic:
            out.append((b + "attn_qkv.weight", (e, 3 * e), F16))
        else:
            for x in "qkv":
                out += [(b + f"attn_{x}.weight", (e, e), F16), (b + f"attn_{x}.bias", (e,), F32)]
        out.append((b + "attn_output.weight", (e, e), F16))
        if not nomic:
            out.append((b + "attn_output.bias", (e,), F32))
        out += [(b + "attn_output_norm.weight", (e,), F32), (b + "attn_output_norm.bias", (e,), F32)]
        out.append((b + "ffn_up.weight", (e, ff), F16))
        if nomic:
            out.append((b + "ffn_gate.weight", (e, ff), F16))
        else:
            out.append((b + "ffn_up.bias", (ff,), F32))
        out.append((b + "ffn_down.weight", (ff, e), F16))
        if not nomic:
            out.append((b + "ffn_down.bias", (e,), F32))
        out += [(b + "layer_output_norm.weight", (e,), F32), (b + "layer_output_norm.bias", (e,), F32)]
    if p["pooling"] == 4:  # rank: a dense layer, then one score
        out += [("cls.weight", (e, e), F16), ("cls.bias", (e,), F32)]
        out += [("cls.output.weight", (e, 1), F16), ("cls.output.bias", (1,), F32)]
    return out


def encoder_meta(p, name):
    tokens, types = wordpiece_vocabulary(p["vocab"])
    a = p["arch"]
    meta = {
        "general.architecture": a,
        "general.name": name,
        "general.file_type": 1,  # MOSTLY_F16
        f"{a}.block_count": p["layers"],
        f"{a}.context_length": p["ctx"],
        f"{a}.embedding_length": p["embd"],
        f"{a}.feed_forward_length": p["ff"],
        f"{a}.attention.head_count": p["heads"],
        f"{a}.attention.layer_norm_epsilon": 1e-12,
        f"{a}.attention.causal": False,
        f"{a}.pooling_type": p["pooling"],
        "tokenizer.ggml.model": "bert",
        "tokenizer.ggml.tokens": ("str", tokens),
        "tokenizer.ggml.token_type": ("i32", types),
        "tokenizer.ggml.token_type_count": 2,
        "tokenizer.ggml.bos_token_id": 101,
        "tokenizer.ggml.seperator_token_id": 102,
        "tokenizer.ggml.unknown_token_id": 100,
        "tokenizer.ggml.padding_token_id": 0,
        "tokenizer.ggml.mask_token_id": 103,
    }
    if a == "nomic-bert":
        meta[f"{a}.rope.freq_base"] = 1000.0
    return meta


def decoder_meta(p, preset, template, control):
    tokens, scores, types = vocabulary(p["vocab"], control)
    meta = {
        "general.architecture": "qwen2",
        "general.name": f"random {preset}",
        "general.size_label": preset.split("-")[-1].upper(),
        "general.file_type": 15,  # MOSTLY_Q4_K_M
        "qwen2.block_count": p["layers"],
        "qwen2.context_length": p["ctx"],
        "qwen2.embedding_length": p["embd"],
        "qwen2.feed_forward_length": p["ff"],
        "qwen2.attention.head_count": p["heads"],
        "qwen2.attention.head_count_kv": p["kv_heads"],
        "qwen2.rope.freq_base": 1000000.0,
        "qwen2.attention.layer_norm_rms_epsilon": 1e-6,
        "tokenizer.ggml.model": "llama",
        "tokenizer.ggml.tokens": ("str", tokens),
        "tokenizer.ggml.scores": ("f32", scores),
        "tokenizer.ggml.token_type": ("i32", types),
        "tokenizer.ggml.bos_token_id": 1,
        "tokenizer.ggml.eos_token_id": 2,
        "tokenizer.ggml.unknown_token_id": 0,
        "tokenizer.ggml.add_bos_token": True,
    }
    if template is not None:
        meta["tokenizer.chat_template"] = template
    return meta


def main():
    args, options = sys.argv[1:3], sys.argv[3:]
    template, control = None, []
    while len(options) >= 2 and options[0] in ("--chat-template", "--control"):
        if options[0] == "--chat-template":
            with open(options[1]) as f:
                template = f.read()
        else:
            control.append(options[1])
        options = options[2:]
    if len(args) != 2 or args[0] not in PRESETS or options:
        sys.exit(f"usage: {sys.argv[0]} {{{','.join(PRESETS)}}} OUT.gguf [--chat-template FILE] [--control TEXT]...")
    preset, path = args
    p = PRESETS[preset]
    if "arch" in p:
        name = {"nomic-bert": "nomic-embed-text-v1.5", "bert-reranker": "bge-reranker"}[preset]
        meta, table = encoder_meta(p, f"{name} (random weights)"), encoder_tensors(p)
    else:
        meta, table = decoder_meta(p, preset, template, control), tensors(p)
    with open(path + ".part", "wb") as f:
        f.write(b"GGUF" + struct.pack("<IQQ", 3, len(table), len(meta)))
        for key, value in meta.items():
            ty, raw = kv_value(value)
            f.write(gguf_string(key) + struct.pack("<I", ty) + raw)
        offset = 0
        for name, dims, ty in table:
            f.write(gguf_string(name) + struct.pack("<I", len(dims)))
            f.write(struct.pack(f"<{len(dims)}Q", *dims) + struct.pack("<IQ", ty, offset))
            offset += -(-nbytes(dims, ty) // ALIGN) * ALIGN
        f.write(b"\0" * (-f.tell() % ALIGN))
        for name, dims, ty in table:
            chunk = data(name, dims, ty)
            f.write(chunk)
            f.write(b"\0" * (-len(chunk) % ALIGN))
    os.replace(path + ".part", path)
    print(f"{path}: {os.path.getsize(path) / 2**30:.2f} GiB, {len(table)} tensors")


if __name__ == "__main__":
    main()
