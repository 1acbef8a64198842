"""The book's modules, served under their book names by `xpnet.book.runner` (`dataset.mnist`,
`common.*`, `two_layer_net`, `simple_convnet`, `deep_convnet`): the book's API, xpnet's work."""
