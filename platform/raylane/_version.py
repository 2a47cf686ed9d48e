"""raylane's version, in a module of its own so every layer can import it without the package façade."""

__version__ = "0.1.0"
