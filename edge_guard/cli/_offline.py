"""Helpers for the offline subcommands: torch is imported here, lazily, with one clear message."""

from edge_guard.errors import require


def require_torch(purpose: str):
    """Import torch or raise MissingDependency naming the `offline` extra."""
    return require("torch", "offline", purpose)


def require_export_tools(command: str) -> None:
    """Everything an ONNX export needs (torch, onnx, onnxscript: torch.onnx's exporter, and
    ONNX Runtime to verify it), checked before any model or data is loaded."""
    require_torch(command)
    require("onnx", "offline", f"{command} (export)")
    require("onnxscript", "offline", f"{command} (torch.onnx's exporter)")
    require("onnxruntime", "cpu", f"{command} (verifying the export)")


def pick_device(name: str | None) -> str:
    """'auto'/None -> 'cuda' when available else 'cpu'; 'cuda' without a GPU is a user error."""
    from edge_guard.errors import UserError

    torch = require_torch("this command")
    if name in (None, "auto"):
        return "cuda" if torch.cuda.is_available() else "cpu"
    try:
        device = torch.device(name)
    except (RuntimeError, ValueError):
        raise UserError(f"--device {name}: use cpu, cuda, cuda:N or auto") from None
    if device.type not in ("cpu", "cuda"):
        raise UserError(f"--device {name}: use cpu, cuda, cuda:N or auto")
    if device.type == "cuda" and not torch.cuda.is_available():
        raise UserError(f"--device {name} asked for, but PyTorch sees no CUDA GPU: use --device cpu")
    if device.type == "cuda" and device.index is not None and device.index >= torch.cuda.device_count():
        raise UserError(f"--device {name}: PyTorch sees {torch.cuda.device_count()} CUDA GPU(s)")
    return name
