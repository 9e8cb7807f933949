"""Keras networks, losses, training and weight import for qsopipe.

TensorFlow is imported only by the submodules that need it. Importing
`qsopipe.models.quasarnet` registers QuasarNET's custom layer and loss, so
`keras.models.load_model` reads the shipped `.keras` files after it;
`qsopipe.models.store.load_model` does that import for you. The MgII CNN
uses built-in layers only.
"""
