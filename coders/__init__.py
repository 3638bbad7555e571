"""Built-in coder plug-ins, one module per family (installed as ``compbench.coders``).

``classical`` holds the in-process library coders, ``external`` wraps compressor command lines.
Each module registers its coders with :func:`compbench.registry.register_coder` on import.
"""
