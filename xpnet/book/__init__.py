"""`xpnet book run SCRIPT`: the book's own scripts, unchanged, on any backend.

A script of the book does `sys.path.append(os.pardir)` and imports `dataset.mnist`, the `common`
package and its chapter's net (`two_layer_net`, `simple_convnet`, `deep_convnet`). `runner`
runs it with those names served from `xpnet.book.served`, whatever the script's folder holds.
What the served modules hand the script is what the book's hand it: NumPy arrays (float64
weights), NumPy floats and lists, so every NumPy idiom of the book keeps working; the work
behind them (forward, backprop, the numerical gradient) runs on the backend of the run
(`session`), compiled by `jax.jit` on JAX.
"""
