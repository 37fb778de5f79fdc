"""Table 2 ablation row (c); see configs/ablations/common.py.

  python -m launch.train --config configs/ablations/row_c.py --workdir workdirs/ablation_c

Result: not measured here (needs the real features).
"""

from configs.ablations import common


def get_config():
  return common.get_config("c")
