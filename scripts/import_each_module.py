"""Import every ``dj_ops`` module alone, each first in a fresh interpreter: an import cycle
that depends on which module is imported first fails here (tests/test_imports.py checks the
module-level import graph statically). Modules of optional extras that are not installed are
listed, not failed."""

from __future__ import annotations

import pkgutil
import subprocess
import sys

import dj_ops

OPTIONAL = ("vllm", "decord", "torchcodec", "ray", "bitsandbytes")
# Run in another environment (transformers 4.42, servers/cogvlm2), importing its siblings flat.
OTHER_ENVIRONMENT = "dj_ops.testing.cogvlm2_standin."


def main() -> int:
    names = sorted(m.name for m in pkgutil.walk_packages(dj_ops.__path__, "dj_ops.")
                   if not m.name.startswith(OTHER_ENVIRONMENT))
    failed, skipped = [], []
    for name in names:
        done = subprocess.run([sys.executable, "-c", f"import {name}"], capture_output=True,
                              text=True)
        if done.returncode == 0:
            continue
        missing = [p for p in OPTIONAL if f"No module named '{p}" in done.stderr]
        (skipped if missing else failed).append(name if not missing else f"{name} ({missing[0]})")
        if not missing:
            print(done.stderr[-2000:], file=sys.stderr)
    print(f"{len(names) - len(failed) - len(skipped)} of {len(names)} modules import alone; "
          f"optional extras missing for: {skipped or 'none'}")
    if failed:
        print(f"failed: {failed}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
