"""Keras networks, losses, training and weight import for qsopipe.

Importing this package registers the custom layers and losses, so that
`keras.models.load_model` reads the shipped `.keras` files. TensorFlow is
imported only by the submodules that need it.
"""
