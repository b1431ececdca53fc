"""``python -m drive_rllib``: the ``rllib`` command (see `drive_rllib.cli`)."""

from drive_rllib.cli import main

if __name__ == "__main__":
    main()
