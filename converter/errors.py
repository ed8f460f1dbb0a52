"""Typed errors of transferjs.

Library code raises these; only ``transferjs.cli`` turns them into exit codes.
Each error carries everything the user needs in one message (all unsupported
ops, all failing outputs), never just the first problem found.

The exit-code contract (README, "Troubleshooting"), the same for every subcommand and for a
bundle's ``predict.mjs``: 0 ok; 2 bad input or options (files, images, bundles, option values,
an output that exists or would delete an input); 3 the conversion or export cannot be done
(unsupported ops with their nodes, a conversion tool's failure); 4 parity failed; 5 a runtime
(Node.js/TF.js) failure of ours; 130 interrupted. 1 is left for a bug (an unexpected exception).
"""

from __future__ import annotations


class TransferJSError(Exception):
    """Base class of every error transferjs raises on purpose.

    ``exit_code`` is what the CLI returns for it. ``report`` is the partial report of the
    operation that failed (e.g. a ``ConversionReport`` with the stages reached), or ``None``.
    """

    exit_code = 1
    report = None


class InputError(TransferJSError):
    """A file or argument the user gave is missing, corrupt or of the wrong kind.

    Example:
        >>> raise InputError("Expected an ONNX file. Received: 'a.bin' (empty file)")
    """

    exit_code = 2


class OutputExistsError(TransferJSError):
    """The output path exists and ``overwrite`` was not asked for."""

    exit_code = 2


class UntrustedCodeError(InputError):
    """Loading the file would run code from it; the user must opt in."""


class UnsupportedOpsError(TransferJSError):
    """Ops the converter or a runtime cannot handle, listed all at once.

    Args:
        where: which stage refused them (e.g. ``"onnx2tf"``, ``"TF.js wasm backend"``).
        ops: op type -> node names where it occurs.
        kind: the words for what is listed (``("layer class", "layer")`` for Keras layers).
    """

    exit_code = 3

    def __init__(self, where: str, ops: dict[str, list[str]], kind: tuple = ("op type", "node")):
        self.where = where
        self.ops = {op: sorted(set(nodes)) for op, nodes in sorted(ops.items())}
        lines = [f"{len(self.ops)} {kind[0]}(s) not supported by {where}:"]
        for op, nodes in self.ops.items():
            shown = ", ".join(nodes[:8]) + (f", … (+{len(nodes) - 8})" if len(nodes) > 8 else "")
            lines.append(f"  {op}: {len(nodes)} {kind[1]}(s): {shown}")
        super().__init__("\n".join(lines))


class ConversionError(TransferJSError):
    """A conversion tool failed; the message names the stage and its last words.

    ``stage`` says which step failed (``"fold"``, ``"passes"``, ``"convert"``…), for tools
    that count failures by step (``bench/onnx_conformance.py``).
    """

    exit_code = 3

    def __init__(self, message: str, stage: str = "convert"):
        super().__init__(message)
        self.stage = stage


class ParityError(TransferJSError):
    """Outputs differ beyond tolerance between two runtimes.

    Args:
        reports: the failing ``ParityReport``s (e.g. source vs TF, TF vs TF.js).
    """

    exit_code = 4

    def __init__(self, reports):
        self.reports = list(reports)
        super().__init__("\n".join(r.failure_message() for r in self.reports))
