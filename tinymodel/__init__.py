"""Small random causal LMs built locally: the `tiny` preset, its demo LoRA adapters, test/benchmark models.

Nothing is downloaded: the tokenizer is a byte-level BPE trained with `tokenizers` on the text
below, the weights are random from a seed, and both are saved with `save_pretrained`, so every
loader in the project treats the result like any Hugging Face model directory.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path

import presets
from artifacts.cache import default_cache_dir

SPECIAL_TOKENS = ["<|endoftext|>", "<|pad|>", "<|system|>", "<|user|>", "<|assistant|>", "<|end|>"]

# A few KB of varied text (prose, code, numbers, chat) so the BPE has useful merges.
_CORPUS = """\
The quick brown fox jumps over the lazy dog. A journey of a thousand miles begins with one step.
Kubernetes schedules pods onto nodes; a Deployment keeps replicas running and a Service routes traffic.
GPU nodes are expensive, so the operator provisions them only when a workspace asks for a model.
Large language models predict the next token. Sampling with temperature, top-k and top-p trades
accuracy for variety. Greedy decoding always picks the most likely token.
def add(a, b):
    return a + b
for i in range(10):
    print(i * i, "squares", {"key": [1, 2, 3]})
class Workspace:
    def __init__(self, name: str, count: int = 1) -> None:
        self.name = name
SELECT name, count(*) FROM workspaces WHERE ready = true GROUP BY name ORDER BY 2 DESC;
curl -X POST http://workspace-phi-3-mini/chat -H "Content-Type: application/json" -d '{"prompt": "hi"}'
Numbers: 0 1 2 3 4 5 6 7 8 9 10 42 100 1024 3.14159 2.71828 1e-5 -7 +12 50% $19.99
Dates and places: Monday, 22 November 2026, Seattle, Paris, Tokyo, Nairobi, Sao Paulo, Sydney.
User: What is the capital of France? Assistant: The capital of France is Paris.
User: Write a haiku about autumn. Assistant: Red leaves drift and fall, the river carries them home, cold wind hums softly.
User: Explain LoRA. Assistant: LoRA trains two small low-rank matrices beside a frozen weight matrix.
Summarize: the meeting moved to Thursday; bring the quarterly report and the budget draft.
Translate to German: good morning, how are you? Guten Morgen, wie geht es dir?
Les modeles de langage repondent en plusieurs langues. Los modelos responden en varios idiomas.
JSON: {"model": "tiny", "messages": [{"role": "user", "content": "Hello!"}], "max_tokens": 16}
Error: 404 not found; 429 too many requests; 503 service unavailable; retry after 1 second.
"""


def _train_tokenizer(vocab_size: int, chat_template: str):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.post_processor = processors.ByteLevel(trim_offsets=False)
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(_CORPUS.splitlines() * 4, trainer=trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token="<|endoftext|>",
        eos_token="<|endoftext|>",
        unk_token="<|endoftext|>",
        pad_token="<|pad|>",
        additional_special_tokens=SPECIAL_TOKENS[2:],
        chat_template=chat_template,
        model_max_length=2048,
    )


def _config(architecture: str, vocab_size: int, tokenizer, **shape):
    from transformers import LlamaConfig, Phi3Config

    common = dict(
        vocab_size=vocab_size,
        hidden_size=shape["hidden_size"],
        intermediate_size=shape["intermediate_size"],
        num_hidden_layers=shape["num_layers"],
        num_attention_heads=shape["num_heads"],
        num_key_value_heads=shape["num_kv_heads"],
        max_position_embeddings=shape["context_length"],
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=[tokenizer.eos_token_id, tokenizer.convert_tokens_to_ids("<|end|>")],
        pad_token_id=tokenizer.pad_token_id,
        tie_word_embeddings=False,
    )
    if architecture == "phi3":
        return Phi3Config(**common)
    if architecture == "llama":
        return LlamaConfig(**common)
    raise ValueError(f"unknown tiny architecture {architecture!r}; accepted: phi3, llama")


def build_tiny_model(
    out_dir: str | os.PathLike,
    architecture: str = "phi3",
    seed: int = 0,
    **overrides,
) -> Path:
    """Build a random causal LM and its tokenizer into `out_dir`; same arguments, same bytes.

    `overrides` change the shape: hidden_size, intermediate_size, num_layers, num_heads,
    num_kv_heads, vocab_size, context_length (defaults: the `tiny` preset's recipe).
    """
    import torch
    from transformers import AutoModelForCausalLM

    spec = presets.get_preset("tiny")
    shape = {**spec.tiny.model_dump(exclude={"architecture", "seed"}), "context_length": spec.context_length}
    unknown = set(overrides) - set(shape)
    if unknown:
        raise TypeError(f"unknown tiny model option(s) {sorted(unknown)}; accepted: {sorted(shape)}")
    shape.update(overrides)

    template = presets.chat_template(spec.chat_template)
    tokenizer = _train_tokenizer(shape["vocab_size"], template)
    # The trained vocabulary can come out smaller than asked; size the embeddings to what exists.
    config = _config(architecture, len(tokenizer), tokenizer, **{k: v for k, v in shape.items() if k != "vocab_size"})
    config.dtype = "float32"
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(config)
    model.generation_config.pad_token_id = tokenizer.pad_token_id

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out


def _recipe_key(architecture: str, seed: int, overrides: dict) -> str:
    recipe = json.dumps({"arch": architecture, "seed": seed, **overrides}, sort_keys=True)
    return hashlib.sha256(recipe.encode()).hexdigest()[:12]


def tiny_model_dir(cache_dir: str | os.PathLike | None = None, **recipe) -> Path:
    """Where `ensure_tiny_model` keeps the model for this recipe (built or not)."""
    spec = presets.get_preset("tiny").tiny
    architecture = recipe.pop("architecture", spec.architecture)
    seed = recipe.pop("seed", spec.seed)
    root = Path(cache_dir) if cache_dir else default_cache_dir()
    return root / "models" / f"tiny-{_recipe_key(architecture, seed, recipe)}"


def is_built(folder: Path, marker: str = "config.json") -> bool:
    """Whether `_build_once` has completed `folder` (a model: config.json; an adapter: adapter_config.json)."""
    return (folder / marker).is_file()


def ensure_tiny_model(cache_dir: str | os.PathLike | None = None, **recipe) -> Path:
    """The tiny preset's model directory in the cache, built on first use."""
    spec = presets.get_preset("tiny").tiny
    architecture = recipe.pop("architecture", spec.architecture)
    seed = recipe.pop("seed", spec.seed)
    target = tiny_model_dir(cache_dir, architecture=architecture, seed=seed, **recipe)
    _build_once(target, "config.json",
                lambda staging: build_tiny_model(staging, architecture=architecture, seed=seed, **recipe))
    return target


def _build_once(target: Path, marker: str, build) -> None:
    """Build into a temporary sibling and rename it into place, so an interrupted build never
    leaves a directory that looks complete."""
    if is_built(target, marker):
        return
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}-", dir=target.parent))
    try:
        build(staging)
        try:
            staging.rename(target)
        except OSError:
            if not is_built(target, marker):  # lost a race to another builder: theirs is fine
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)


_LORA_TARGETS = {"phi3": ["qkv_proj", "o_proj"], "llama": ["q_proj", "v_proj"]}

# `kaito up --demo-adapters`: name -> (seed, strength). Two strengths, so /chat's combination shows.
DEMO_ADAPTERS: dict[str, tuple[int, float]] = {"demo-alpha": (1, 1.0), "demo-beta": (2, 0.5)}


def build_adapter(base_dir: str | Path, out_dir: str | Path, *, seed: int = 1, r: int = 4,
                  scale: float = 0.5) -> Path:
    """A LoRA adapter over a tiny model whose lora_B is random (peft initializes it to zero),
    so it visibly changes the base model's outputs."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    base = AutoModelForCausalLM.from_pretrained(base_dir)
    arch = "phi3" if base.config.model_type == "phi3" else "llama"
    cfg = LoraConfig(r=r, lora_alpha=2 * r, target_modules=_LORA_TARGETS[arch], task_type="CAUSAL_LM",
                     init_lora_weights=True)
    model = get_peft_model(base, cfg)
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.copy_(torch.randn(p.shape, generator=gen) * scale)
    out = Path(out_dir)
    model.save_pretrained(out)
    return out


def demo_adapter_dirs(base_dir: Path) -> dict[str, Path]:
    """Where the demo adapters live: beside the tiny model they were built for."""
    return {name: base_dir.parent / f"{base_dir.name}-adapters" / name for name in DEMO_ADAPTERS}


def ensure_demo_adapters(base_dir: Path) -> list[dict]:
    """The demo adapters over `base_dir`, built on first use, as `kaito up` adapter args."""
    out = []
    for name, path in demo_adapter_dirs(base_dir).items():
        seed, strength = DEMO_ADAPTERS[name]
        _build_once(path, "adapter_config.json", lambda staging, s=seed: build_adapter(base_dir, staging, seed=s))
        out.append({"name": name, "source": str(path), "strength": strength})
    return out
