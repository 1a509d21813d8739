"""`novel-engine-operator` command line."""

import argparse
from collections.abc import Sequence


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="novel-engine-operator")
    parser.parse_args(argv)
