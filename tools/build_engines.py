"""Placeholder: this command is not built yet."""


def configure(parser):
    """Add this command's arguments to its argparse sub-parser."""


def run(args) -> int:
    print(f"{args.command}: not built yet")
    return 2
