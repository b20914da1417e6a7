"""The graph pieces the explanation graph is made of."""
