"""Provenance lines for benchmark reports: the commit and the machine."""

from __future__ import annotations

import os
import platform
import subprocess

REPO = os.path.abspath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))


def git_commit(repo: str = REPO) -> str:
    """Short HEAD (+dirty when tracked files changed); on a machine without the git
    history, .devcarry/COMMIT (the packed tree's commit) marked "(pack)"; else "unknown"."""
    try:
        c = subprocess.run(["git", "-C", repo, "rev-parse", "--short=12", "HEAD"], capture_output=True,
                           text=True, timeout=10)
        if c.returncode == 0 and c.stdout.strip():
            d = subprocess.run(["git", "-C", repo, "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=10).stdout.strip()
            return c.stdout.strip() + ("+dirty" if d else "")
    except (OSError, subprocess.SubprocessError):
        pass
    p = os.path.join(repo, ".devcarry", "COMMIT")
    if os.path.exists(p):
        with open(p) as f:
            return f.read().strip() + " (pack)"
    return "unknown"


def cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def machine_line(torch=None, device=None) -> str:
    """"<GPU or 'no GPU (CPU run)'>; <CPU> (<n> cores); Python x, torch y"."""
    gpu = "no GPU (CPU run)"
    if torch is not None and device is not None and getattr(device, "type", str(device)) == "cuda":
        gpu = torch.cuda.get_device_name(device)
    versions = f"Python {platform.python_version()}" + (f", torch {torch.__version__}" if torch is not None else "")
    return f"{gpu}; {cpu_name()} ({os.cpu_count()} cores); {versions}"
