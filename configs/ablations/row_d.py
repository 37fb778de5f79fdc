"""Table 2 ablation row (d); see configs/ablations/common.py.

  python -m launch.train --config configs/ablations/row_d.py --workdir workdirs/ablation_d

Result: not measured here (needs the real features).
"""

from configs.ablations import common


def get_config():
  return common.get_config("d")
