"""`python -m moebench …` (what torchrun starts on every rank)."""

from moebench.cli import main

main()
