"""Monte Carlo: rejection, adaptive rejection, importance sampling and resampling schemes."""
