"""Table 2 ablation row (b); see configs/ablations/common.py.

  python -m launch.train --config configs/ablations/row_b.py --workdir workdirs/ablation_b

Result: not measured here (needs the real features).
"""

from configs.ablations import common


def get_config():
  return common.get_config("b")
