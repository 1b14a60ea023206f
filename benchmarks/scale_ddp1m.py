"""1M items / 10M interactions: positives/s of YoutubeDNN by its train_defaults in 1 process
and in 2 gloo DDP processes (the same global batch of 512 and the same STEPS x 512 rows).

    STEPS=150 OMP_NUM_THREADS=1 python benchmarks/scale_ddp1m.py OUT_DIR

Writes OUT_DIR/ddp1.json and OUT_DIR/ddp2.json; ``benchmarks.scale`` shows them in scale.md when
copied to ``benchmarks/results/scale_ddp1m.json`` as ``{"runs": [ddp2, ddp1]}``.
"""

import json
import os
import socket
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
import torch
import torch.multiprocessing as mp

STEPS = int(os.environ.get("STEPS", "150"))


def data():
    from benchmarks.scale import big_interactions
    from rechub_core.preprocess import prepare

    return prepare(big_interactions(1_000_000, 10_000_000, 20, 30, 1000), 20)


def run(rank, world, port, out):
    if world > 1:
        os.environ.update(
            MASTER_ADDR="127.0.0.1",
            MASTER_PORT=str(port),
            RANK=str(rank),
            WORLD_SIZE=str(world),
            LOCAL_RANK=str(rank),
        )
    torch.set_num_threads(1)
    from rechub_core import distributed
    from rechub_core.data import loaders_from_prepared
    from rechub_core.plugins import get_spec
    from rechub_core.runs import build_model, build_trainer, default_settings
    from rechub_core.schema import DataSchema

    distributed.setup("cpu")
    d = data()
    spec = get_spec("model", "YoutubeDNN")
    st = default_settings(spec, epochs=1)
    torch.manual_seed(0)
    model = build_model(spec, DataSchema.from_prepared(d), {})
    tr, _, _ = loaders_from_prepared(d, st.batch_size, 0)
    n = STEPS * st.batch_size
    take = torch.randperm(tr.n_rows, generator=torch.Generator().manual_seed(0))[:n]
    tr.tensors = {k: v[take] for k, v in tr.tensors.items()}
    tr.n_rows = n
    t = build_trainer(model, st, f"{out}/run{world}", verbose=False, threads=1)
    h = t.fit(tr)
    if rank == 0:
        sparse = any(m.sparse for m in model.modules() if isinstance(m, torch.nn.Embedding))
        Path(out, f"ddp{world}.json").write_text(
            json.dumps(
                {
                    "world": world,
                    "steps": STEPS,
                    "seconds": h[0]["seconds"],
                    "positives_per_s": h[0]["samples_per_s"],
                    "sparse_tables": sparse,
                    "optimizer": type(t.optimizer).__name__,
                    "load": os.getloadavg(),
                }
            )
        )
    distributed.shutdown()
    if world > 1:
        os._exit(0)


if __name__ == "__main__":
    out = sys.argv[1]
    os.makedirs(out, exist_ok=True)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    mp.spawn(run, args=(2, port, out), nprocs=2, join=True)
    run(0, 1, 0, out)
    runs = [json.loads(Path(out, f"ddp{w}.json").read_text()) for w in (2, 1)]
    result = {"command": f"STEPS={STEPS} python benchmarks/scale_ddp1m.py OUT", "runs": runs}
    Path(out, "scale_ddp1m.json").write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result), flush=True)
