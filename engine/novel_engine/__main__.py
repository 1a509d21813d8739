"""`python -m novel_engine`: the same as the `novel-engine` command."""

from novel_engine.cli import main

if __name__ == "__main__":
    main()
