#!/usr/bin/env python3
"""The seed's HuggingFace backend, as a reference to measure ours against (GPU machine only).

What service_huggingface.py does: sentence-transformers' encode (the engine behind LangChain's
HuggingFaceEmbeddings), fp32, batch 32, mean pooling, L2 normalised, one request at a time
(the handler blocks the event loop while it encodes, as a sync encode in an async endpoint
does). Same /health and /embed wire format as the seed and as embedbench.

  python3 hf_service.py --model /tmp/mb --port 8002
"""
import argparse
import time

import torch
from aiohttp import web
from sentence_transformers import SentenceTransformer, models


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", required=True)
    ap.add_argument("--port", type=int, default=8002)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--served-model-name", default="modernbert-base-random")
    args = ap.parse_args()

    torch.backends.cuda.matmul.allow_tf32 = False
    word = models.Transformer(args.model, max_seq_length=8192)
    pool = models.Pooling(word.get_word_embedding_dimension(), pooling_mode="mean")
    st = SentenceTransformer(modules=[word, pool, models.Normalize()], device="cuda")
    st.encode(["warm up"] * 64, batch_size=args.batch_size)
    dim = word.get_word_embedding_dimension()

    async def health(_):
        return web.json_response({"status": "healthy", "backend": "huggingface",
                                  "model": args.served_model_name, "gpu_available": torch.cuda.is_available(),
                                  "dtype": "float32", "pooling": "mean", "weights": args.model})

    async def embed(request):
        try:
            body = await request.json()
        except Exception:
            return web.json_response({"error": "malformed JSON"}, status=400)
        texts = body.get("texts") if isinstance(body, dict) else None
        if not isinstance(texts, list) or not texts or not all(isinstance(t, str) for t in texts):
            return web.json_response({"error": "texts must be a non-empty list of strings"}, status=422)
        t0 = time.perf_counter()
        vecs = st.encode(texts, batch_size=args.batch_size, convert_to_numpy=True)
        ms = (time.perf_counter() - t0) * 1000
        return web.json_response(
            {"embeddings": vecs.tolist(), "model": args.served_model_name, "num_embeddings": len(texts),
             "embedding_dim": dim}, headers={"X-Embedbench-Inference-Ms": f"{ms:.3f}"})

    app = web.Application(client_max_size=64 << 20)
    app.add_routes([web.get("/health", health), web.post("/embed", embed)])
    web.run_app(app, host="127.0.0.1", port=args.port, print=None, access_log=None)


if __name__ == "__main__":
    main()
