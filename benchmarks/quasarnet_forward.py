"""Throughput of QuasarNET's compiled forward pass (spectra per second), against model.predict.

Usage: python benchmarks/quasarnet_forward.py [--threads 1] [--n 8192] [--batch 1024] [--model PATH]

Without --model it times the default network (4 conv layers, 100 filters,
random weights). Thread counts are set before TensorFlow starts.
"""

import argparse
import os
import time


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--n", type=int, default=8192, help="spectra per timed pass")
    parser.add_argument("--batch", type=int, default=1024)
    parser.add_argument("--model", help=".keras model or legacy .h5 (default: a fresh default network)")
    args = parser.parse_args()
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

    import numpy as np

    from qsopipe.models import quasarnet
    from qsopipe.pipeline.grids import QN_NBINS
    quasarnet.configure_threads(args.threads)
    import keras

    if args.model is None:
        model, label = quasarnet.build_quasarnet(), "default network (4 x 100 filters)"
    elif args.model.endswith(".h5"):
        from qsopipe.models.legacy import import_legacy
        model, label = import_legacy(args.model), args.model
    else:
        model, label = keras.models.load_model(args.model), args.model
    x = np.random.default_rng(0).normal(size=(args.n, QN_NBINS)).astype(np.float32)

    start = time.perf_counter()
    quasarnet.predict(model, x[:args.batch], batch=args.batch)
    trace_s = time.perf_counter() - start
    start = time.perf_counter()
    quasarnet.predict(model, x, batch=args.batch)
    compiled_s = time.perf_counter() - start
    model.predict(x[:args.batch, :, None], batch_size=args.batch, verbose=0)
    start = time.perf_counter()
    model.predict(x[..., None], batch_size=args.batch, verbose=0)
    keras_s = time.perf_counter() - start

    print(f"model: {label}; {args.threads} thread(s); batch {args.batch}; {args.n} spectra")
    print(f"first call (trace): {trace_s:.2f} s")
    print(f"compiled forward:   {args.n / compiled_s:10.0f} spectra/s")
    print(f"model.predict:      {args.n / keras_s:10.0f} spectra/s")


if __name__ == "__main__":
    main()
