"""bench_load (a), the ``from_pretrained`` part (needs the ``bench`` extra: torch and transformers).

A Llama-shaped float16 model of about ``--model-mib``, saved by transformers in 3 safetensors shards, is
uploaded to its own repo. Each load runs in a fresh process: ``AutoModelForCausalLM.from_pretrained`` and then
a sum over every parameter (first use touches every byte), timed inside the process on both sides:
  through a cold mount (fresh mount and cache)  vs  hf_xet ``snapshot_download``, then the same local load.
ratio = mount / (download + load)   (target <= 1.0)
"""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any, Callable

HIDDEN, INTERMEDIATE, VOCAB = 2048, 5632, 32000
MAKE = """
import sys, torch
from transformers import LlamaConfig, LlamaForCausalLM
torch.manual_seed(0)
cfg = LlamaConfig(hidden_size={h}, intermediate_size={i}, num_hidden_layers=int(sys.argv[2]), num_attention_heads=16,
                  num_key_value_heads=16, vocab_size={v}, tie_word_embeddings=False)
with torch.no_grad():
    model = LlamaForCausalLM(cfg).to(torch.float16)
model.save_pretrained(sys.argv[1], max_shard_size=sys.argv[3])
""".format(h=HIDDEN, i=INTERMEDIATE, v=VOCAB)
LOAD = """
import json, sys, time, torch
from transformers import AutoModelForCausalLM
path, download = sys.argv[1], sys.argv[2] == "download"
t0 = time.perf_counter()
if download:
    from huggingface_hub import snapshot_download
    path = snapshot_download("org/hf-model", local_dir=path)
t1 = time.perf_counter()
model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float16)
with torch.no_grad():
    total = sum(float(p.sum(dtype=torch.float32)) for p in model.parameters())
t2 = time.perf_counter()
print(json.dumps({"download_s": t1 - t0, "load_s": t2 - t1, "params": sum(p.numel() for p in model.parameters())}))
"""


def available() -> str | None:
    """None when torch and transformers import, else why not."""
    try:
        import torch  # noqa: F401
        import transformers  # noqa: F401
    except ImportError:
        return "skipped: torch/transformers not installed (pip install xetfs[bench])"
    return None


def _run(code: str, *args: str, env: dict[str, str] | None = None) -> dict[str, Any]:
    out = subprocess.run([sys.executable, "-c", code, *args], check=True, capture_output=True, text=True, env=env)
    return dict(json.loads(out.stdout.strip().splitlines()[-1]))


def bench_from_pretrained(server: Any, tmp: Path, model_mib: int, fresh: Callable[..., Any],
                          env: dict[str, str]) -> dict[str, Any]:
    """``fresh(server, tmp, repo, tag)``: bench_load's cold-mount context; ``env``: hf_xet's environment."""
    from xetfs.testing.mount import xetfs_cli

    src = tmp / "hf-model"
    shutil.rmtree(src, ignore_errors=True)
    per_layer = 2 * (4 * HIDDEN * HIDDEN + 3 * HIDDEN * INTERMEDIATE)
    embeddings = 2 * 2 * VOCAB * HIDDEN                   # input and output, float16
    layers = max(1, round((model_mib * 2**20 - embeddings) / per_layer))
    shard_mb = (embeddings + layers * per_layer) // 3 // 10**6 + 8   # 3 shards (transformers' MB is 10^6 bytes)
    subprocess.run([sys.executable, "-c", MAKE, str(src), str(layers), f"{shard_mb}MB"], check=True,
                   capture_output=True)
    server.create_repo("org/hf-model")
    xetfs_cli("upload", "org/hf-model", str(src), "--endpoint", server.url, "--token", server.token)
    model_bytes = sum(p.stat().st_size for p in src.glob("*.safetensors"))
    with fresh(server, tmp, "org/hf-model", "hf") as cold:
        mount = _run(LOAD, str(cold.m.path), "mount")
        served = cold.served()
    shutil.rmtree(tmp / "hf-snapshot", ignore_errors=True)
    local = _run(LOAD, str(tmp / "hf-snapshot"), "download", env=env)
    return {"model_bytes": model_bytes, "shards": len(list(src.glob("*.safetensors"))), "params": mount["params"],
            "mount_s": mount["load_s"], "download_s": local["download_s"], "load_after_download_s": local["load_s"],
            "fetched_over_model": served / model_bytes,
            "ratio": mount["load_s"] / (local["download_s"] + local["load_s"]), "target": 1.0}
