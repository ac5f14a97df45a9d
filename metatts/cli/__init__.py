"""The command line: ``python -m metatts COMMAND ...``. Each command is a module here with
``main(argv: list[str] | None = None) -> int``; this file only dispatches to it."""

from __future__ import annotations

import importlib
import sys

COMMANDS = {
    "inspect": ("metatts.cli.inspect", "detect a dataset's layout and summarize it as JSON"),
    "corpus": ("metatts.cli.corpus", "build the offline multi-speaker corpus"),
    "train": ("metatts.cli.train", "pretrain the acoustic model or meta-train an initialization"),
    "synthesize": ("metatts.cli.synthesize", "speak text with a checkpoint's speaker or a voice"),
    "adapt": ("metatts.cli.adapt", "adapt to a new voice from a few clips"),
    "realvoice": ("metatts.cli.realvoice", "build the real-voice evaluation group"),
    "postfilter": ("metatts.cli.postfilter",
                   "measure a checkpoint's mel post-filter from its training data"),
}


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print("usage: python -m metatts COMMAND [options]\n\ncommands:")
        for name, (_, text) in COMMANDS.items():
            print(f"  {name:<12}{text}")
        print("\nRun `python -m metatts COMMAND --help` for a command's options.")
        return 0 if argv else 2
    name, rest = argv[0], argv[1:]
    if name not in COMMANDS:
        print(f"metatts: unknown command {name!r}; choose from {', '.join(COMMANDS)}",
              file=sys.stderr)
        return 2
    try:
        module = importlib.import_module(COMMANDS[name][0])
    except ModuleNotFoundError as err:
        if err.name == COMMANDS[name][0]:
            print(f"metatts: the {name!r} command is not available in this version yet.",
                  file=sys.stderr)
            return 2
        raise
    return module.main(rest)
