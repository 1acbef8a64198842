"""The chapter-8 `deep_convnet`."""
from xpnet.book.nets import DeepConvNet  # noqa: F401
