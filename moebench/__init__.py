"""moebench: tokenomics benchmarking and profiling for dense and Mixture-of-Experts LLMs.

Importing this package must stay cheap: no torch here.
"""

__version__ = "0.1.0"
