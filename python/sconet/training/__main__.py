"""``python -m sconet.training [options]`` = ``sconet train [options]`` (the torchrun entry point)."""

from sconet.training.loop import main

main()
