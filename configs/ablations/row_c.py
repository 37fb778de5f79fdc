"""Table 2 ablation row (c); see configs/ablations/common.py."""

from configs.ablations import common


def get_config():
  return common.get_config("c")
