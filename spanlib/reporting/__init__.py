"""Tables, figures and the paper's numbers, from evaluation results."""
