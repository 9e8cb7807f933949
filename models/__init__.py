"""Keras networks, losses, training and weight import for qsopipe.

TensorFlow is imported only by the submodules that need it. Importing
`qsopipe.models.quasarnet` registers QuasarNET's custom layer and loss, so
`keras.models.load_model` reads the shipped `.keras` files after it;
`qsopipe.models.store.load_model` does that import for you. The MgII CNN
uses built-in layers only.

Before any of them imports TensorFlow, two of its settings get defaults
(an environment variable already set wins): TF_CPP_MIN_LOG_LEVEL=2 keeps
its C++ information messages out of the logs, and TF_ENABLE_ONEDNN_OPTS=0
turns off the oneDNN custom operations, whose start-up notice TensorFlow
2.21 writes to stderr whatever the log level, on every CPU that has them
(AVX-512), and whose round-off differs from the CPUs without them: with
them off, a catalog does not depend on the node's instruction set. They
make the QuasarNET forward pass about 30% faster on an AVX-512 core; set
TF_ENABLE_ONEDNN_OPTS=1 to have them.
"""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")
