"""The book's neural-network toolbox (chapters 3-5), written once against any array namespace."""
from xpnet.nn.functions import (
    cross_entropy_error,
    identity_function,
    one_hot,
    relu,
    sigmoid,
    softmax,
    step_function,
    sum_squared_error,
)
from xpnet.nn.central_differences import gradient_descent, numerical_diff, numerical_gradient
from xpnet.nn.init import INIT_SCALES
from xpnet.nn.layers import (
    ACTIVATIONS,
    Affine,
    BaseLayer,
    BatchNormalization,
    Context,
    Dropout,
    Layer,
    Relu,
    Sigmoid,
    SoftmaxWithLoss,
)
from xpnet.nn.conv import Convolution, Pooling, col2im, conv_output_size, im2col
from xpnet.nn.convnets import DeepConvNet, SimpleConvNet
from xpnet.nn.models import MODELS, MultiLayerNet, MultiLayerNetExtend, Net, TwoLayerNet
from xpnet.nn.network import Sequential
from xpnet.nn.optimizers import (
    OPTIMIZERS,
    SGD,
    AdaGrad,
    Adam,
    Momentum,
    Nesterov,
    Optimizer,
    RMSprop,
    make_optimizer,
)
from xpnet.nn.trainer import Trainer

__all__ = [
    "identity_function", "step_function", "sigmoid", "relu", "softmax", "one_hot",
    "sum_squared_error", "cross_entropy_error",
    "numerical_diff", "numerical_gradient", "gradient_descent",
    "Layer", "BaseLayer", "Context", "Affine", "Relu", "Sigmoid", "SoftmaxWithLoss",
    "BatchNormalization", "Dropout", "Sequential", "ACTIVATIONS", "INIT_SCALES",
    "Net", "TwoLayerNet", "MultiLayerNet", "MultiLayerNetExtend", "MODELS",
    "Optimizer", "SGD", "Momentum", "Nesterov", "AdaGrad", "RMSprop", "Adam", "OPTIMIZERS",
    "make_optimizer", "Trainer",
    "im2col", "col2im", "conv_output_size", "Convolution", "Pooling", "SimpleConvNet", "DeepConvNet",
]
