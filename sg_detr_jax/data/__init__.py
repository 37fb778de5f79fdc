"""Input data: dataset conventions, training targets and the grain input pipeline."""
