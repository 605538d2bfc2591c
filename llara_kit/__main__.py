"""``python -m llara_kit``: the command line, as ``torchrun``/``accelerate launch -m llara_kit``
run it."""

from llara_kit.cli import main

if __name__ == "__main__":  # not when a spawned child process imports this module
    main()
