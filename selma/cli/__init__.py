"""The ``selma-bench`` command line: one module per subcommand over the library's Python API."""

from __future__ import annotations

import argparse
import errno
import logging
import os
import re
import sys
import traceback
from collections.abc import Sequence
from typing import Any, NoReturn

from selma import __version__
from selma.errors import SelmaError

COMMANDS = [
    "suites",
    "rescore",
    "meta_eval",
    "compare",
    "report",
    "models",
    "metrics",
    "datagen",
    "generate",
    "train",
    "merge",
    "demo",
    "world",
    "score",
    "run",
    "study",
    "reproduce",
    "leaderboard",
    "export",
]


class Parser(argparse.ArgumentParser):
    """An argument parser whose errors are one line (the usage is one ``-h`` away)."""

    def error(self, message: str) -> NoReturn:
        """Print ``selma-bench: error: <message>`` and exit with status 2."""
        self.exit(2, f"{self.prog}: error: {message} (see `{self.prog} -h`)\n")


def _add_verbosity(parser: argparse.ArgumentParser, default: Any) -> None:
    parser.add_argument("-q", "--quiet", action="store_true", default=default, help="only errors on stderr")
    parser.add_argument("-v", "--verbose", action="store_true", default=default, help="tracebacks and library logs")


def _verbosity_everywhere(parser: argparse.ArgumentParser) -> None:
    """-q and -v also after the subcommand (a subcommand's default leaves the top-level value alone)."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                _add_verbosity(sub, default=argparse.SUPPRESS)
                _verbosity_everywhere(sub)


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``selma-bench``: each subcommand module adds its own."""
    import importlib

    from selma.cli._common import data_options, launcher_options

    parser = Parser(prog="selma-bench", description="Reproduce SELMA and score text-to-image models for faithfulness.")
    parser.add_argument("--version", action="version", version=f"selma-bench {__version__}")
    _add_verbosity(parser, default=False)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    common = {"data": data_options(), "launch": launcher_options()}
    for name in COMMANDS:
        importlib.import_module(f"selma.cli.{name}").add_parser(sub, common)
    _verbosity_everywhere(parser)
    return parser


LIBRARIES = ("transformers", "diffusers", "peft", "accelerate", "datasets", "huggingface_hub", "torch")


def quiet_libraries() -> None:
    """Library notices (torchvision fallbacks, LoRA loading notes, deprecations) only with ``-v``.

    diffusers and transformers set their loggers' level when they are first used, from their
    ``*_VERBOSITY`` variables, so those are set here (a value the user set is kept) and the loggers of
    libraries already imported are set too.
    """
    import warnings

    for variable in ("DIFFUSERS_VERBOSITY", "TRANSFORMERS_VERBOSITY", "DATASETS_VERBOSITY"):
        os.environ.setdefault(variable, "error")
    # datasets' bars over local image folders ("Downloading data", "Generating train split") say nothing useful
    os.environ.setdefault("HF_DATASETS_DISABLE_PROGRESS_BARS", "1")
    for library in LIBRARIES:
        logging.getLogger(library).setLevel(logging.ERROR)
        if library in ("diffusers", "transformers") and f"{library}.utils.logging" in sys.modules:
            sys.modules[f"{library}.utils.logging"].set_verbosity_error()
    warnings.filterwarnings("ignore", module=rf"({'|'.join(LIBRARIES)})(\.|$)")


_SWITCHES = (
    ("huggingface_hub.utils", "progress_bars"),
    ("datasets", "progress_bars"),
    ("diffusers.utils.logging", "progress_bar"),
    ("transformers.utils.logging", "progress_bar"),
)
_quieted = {"tqdm_env": False, "libraries": False}


def progress_bars(*, on: bool) -> None:
    """Every progress bar off (``-q``: tqdm's, also those whose caller passes ``disable=``, which overrides
    ``TQDM_DISABLE``, and the libraries' own) or on again: what an earlier ``-q`` call in the same process
    (the Python API, a notebook, tests) turned off is turned back on, nothing a user set.
    """
    import tqdm.std

    original = getattr(tqdm.std.tqdm.__init__, "selma_original", None)
    if on:
        if original is not None:
            tqdm.std.tqdm.__init__ = original  # type: ignore[method-assign]
        if _quieted["tqdm_env"]:
            os.environ.pop("TQDM_DISABLE", None)
            _quieted["tqdm_env"] = False
        if _quieted["libraries"]:
            os.environ.pop("HF_HUB_DISABLE_PROGRESS_BARS", None)
            for module, switch in _SWITCHES:
                if module in sys.modules:
                    getattr(sys.modules[module], f"enable_{switch}")()
            _quieted["libraries"] = False
        return
    if original is None:
        unpatched = tqdm.std.tqdm.__init__

        def quiet_init(self: Any, *args: Any, **kwargs: Any) -> None:
            kwargs["disable"] = True
            unpatched(self, *args, **kwargs)

        quiet_init.selma_original = unpatched  # type: ignore[attr-defined]
        tqdm.std.tqdm.__init__ = quiet_init  # type: ignore[method-assign]
    if "HF_HUB_DISABLE_PROGRESS_BARS" not in os.environ:
        os.environ["HF_HUB_DISABLE_PROGRESS_BARS"] = "1"
        _quieted["libraries"] = True
    for module, switch in _SWITCHES:
        if module in sys.modules:
            getattr(sys.modules[module], f"disable_{switch}")()
            _quieted["libraries"] = True


FILE_SYSTEM_ERRORS = {
    errno.ENOSPC: "no space left on the device (free some, then run the same command again: finished work is kept)",
    errno.EDQUOT: "the disk quota is exceeded (free some, then run the same command again)",
    errno.EROFS: "a read-only file system (choose another --out)",
    errno.EACCES: "permission denied (choose another --out, or change the folder's permissions)",
    errno.EPERM: "operation not permitted (choose another --out)",
}


NEGATIVE_LIST = re.compile(r"^-\d*\.?\d+([eE][-+]?\d+)?(,[-+]?\d*\.?\d+([eE][-+]?\d+)?)+$")


def join_negative_lists(words: list[str]) -> list[str]:
    """``--weights -1,2`` as ``--weights=-1,2``: argparse reads a value that starts with ``-`` and is not one
    number as an unknown flag, and a comma list of numbers is never a flag.
    """
    joined: list[str] = []
    for word in words:
        if joined and joined[-1].startswith("--") and "=" not in joined[-1] and NEGATIVE_LIST.match(word):
            joined[-1] = f"{joined[-1]}={word}"
        else:
            joined.append(word)
    return joined


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``selma-bench`` console script: every failure is one line on stderr and exit
    status 2 (``-v`` adds the traceback); nothing is left half-written by the stages.
    """
    words = join_negative_lists(sys.argv[1:] if argv is None else list(argv))
    quiet = ("-q" in words or "--quiet" in words) and "-v" not in words and "--verbose" not in words
    if quiet and "TQDM_DISABLE" not in os.environ:
        os.environ["TQDM_DISABLE"] = "1"  # before anything imports tqdm, which reads it then
        _quieted["tqdm_env"] = True
    parser = build_parser()
    args = parser.parse_args(words)
    if getattr(args, "action", None) == "show" and not args.name:
        parser.error("suites show needs a suite name")
    logging.basicConfig(
        level=logging.ERROR if args.quiet else logging.INFO if args.verbose else logging.WARNING,
        format="warning: %(message)s",
        stream=sys.stderr,
        force=True,
    )
    progress_bars(on=args.verbose or not args.quiet)
    if not args.verbose:
        quiet_libraries()
    try:
        return args.func(args)
    except SelmaError as exc:
        if args.verbose:
            traceback.print_exc()
        print(f"selma-bench: error: {exc}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # output piped into `head` and the like
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except KeyboardInterrupt:
        print("selma-bench: interrupted", file=sys.stderr)
        return 130
    except OSError as exc:
        if exc.errno not in FILE_SYSTEM_ERRORS:
            return _unexpected(exc, verbose=args.verbose)
        if args.verbose:
            traceback.print_exc()
        where = exc.filename or "the output"
        print(f"selma-bench: error: {where}: {FILE_SYSTEM_ERRORS[exc.errno]}", file=sys.stderr)
        return 2
    except Exception as exc:  # the one error boundary: an unexpected failure is still one line
        return _unexpected(exc, verbose=args.verbose)


def _unexpected(exc: BaseException, *, verbose: bool) -> int:
    if verbose:
        traceback.print_exc()
    first = (str(exc).strip().splitlines() or [""])[0][:300]
    print(
        f"selma-bench: error: {type(exc).__name__}: {first} (an unexpected failure: run with -v for the "
        "traceback, and please report it)",
        file=sys.stderr,
    )
    return 2


if __name__ == "__main__":
    sys.exit(main())
