"""Architecture values of the search spaces: frozen, hashable, encode/decode; leaf modules."""
