"""Table 2 ablation row (a); see configs/ablations/common.py.

  python -m launch.train --config configs/ablations/row_a.py --workdir workdirs/ablation_a

Result: not measured here (needs the real features).
"""

from configs.ablations import common


def get_config():
  return common.get_config("a")
