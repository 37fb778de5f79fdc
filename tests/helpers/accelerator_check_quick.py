"""`benchmarks/accelerator_check.sh --quick` as the user runs it, writing OUT_DIR/check.json;
its output goes to stdout (tests/test_accelerator_check.py asserts on both).

  python tests/helpers/accelerator_check_quick.py OUT_DIR
"""

import os
import subprocess
import sys

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

if __name__ == "__main__":
  out = os.path.join(sys.argv[1], "check.json")
  proc = subprocess.run([os.path.join(REPO, "benchmarks", "accelerator_check.sh"), "--quick",
                         f"--out={out}"], cwd=REPO, check=False,
                        env=dict(os.environ, JAX_PLATFORMS="cpu"))
  sys.exit(proc.returncode)
