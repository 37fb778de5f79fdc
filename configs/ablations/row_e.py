"""Table 2 ablation row (e); see configs/ablations/common.py.

  python -m launch.train --config configs/ablations/row_e.py --workdir workdirs/ablation_e

Result: not measured here (needs the real features).
"""

from configs.ablations import common


def get_config():
  return common.get_config("e")
