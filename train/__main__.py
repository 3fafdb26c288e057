"""`python -m train ...` (and `torchrun ... -m train fit ...`)."""

from train.cli import main

if __name__ == "__main__":
    main()
