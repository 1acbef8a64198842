"""The book's `common` package, served by xpnet."""
