"""`python -m sconet` runs the command line."""

from sconet.cli import main

main()
