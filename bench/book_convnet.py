"""The book's SimpleConvNet (chapter 7) in plain NumPy, written the book's way: the reference the
conv benchmark measures xpnet against (impl book-numpy), as the book's loop is for the numerical
gradient. Its layers and Adam are those of bench/book_style (our own code in the book's style:
im2col fills an (N, C, FH, FW, OH, OW) array with a loop over the filter window, max pooling
takes im2col's rows and their argmax, layers keep what backward needs on `self`, the first
convolution's input gradient is computed too, Adam updates the params in place), which keep a
float32 benchmark in float32. This module only builds the net on the params it is given.
"""
import sys
from pathlib import Path

BOOK_STYLE = str(Path(__file__).resolve().parent / "book_style")
if BOOK_STYLE not in sys.path:
    sys.path.append(BOOK_STYLE)  # after everything else: the book's names are generic

from common.layers import Affine, Convolution, Pooling, Relu, SoftmaxWithLoss  # noqa: E402
from common.optimizer import Adam  # noqa: E402,F401  (the conv bench's optimizer)
from common.util import col2im, im2col  # noqa: E402,F401


class SimpleConvNet:
    """conv - relu - pool - affine - relu - affine - softmax, on the params it is given (W1 (FN,
    C, FS, FS), b1, W2, b2, W3, b3: NumPy arrays the layers reference, updated in place)."""

    def __init__(self, params, stride=1, pad=0):
        self.params = params
        self.layers = [Convolution(params["W1"], params["b1"], stride, pad), Relu(),
                       Pooling(2, 2, stride=2), Affine(params["W2"], params["b2"]), Relu(),
                       Affine(params["W3"], params["b3"])]
        self.last_layer = SoftmaxWithLoss()

    def loss(self, x, t):
        for layer in self.layers:
            x = layer.forward(x)
        return self.last_layer.forward(x, t)

    def gradient(self, x, t):
        """The params' gradients by backprop; the batch's loss is kept in `last_loss`."""
        self.last_loss = self.loss(x, t)
        dout = self.last_layer.backward(1)
        for layer in reversed(self.layers):
            dout = layer.backward(dout)
        conv, affine1, affine2 = self.layers[0], self.layers[3], self.layers[5]
        return {"W1": conv.dW, "b1": conv.db, "W2": affine1.dW, "b2": affine1.db,
                "W3": affine2.dW, "b3": affine2.db}
