"""The notebooks' helpers and short studies: notebook, lab, experiments, loss balance."""
