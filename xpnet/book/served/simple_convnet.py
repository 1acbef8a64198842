"""The chapter-7 `simple_convnet`."""
from xpnet.book.nets import SimpleConvNet  # noqa: F401
