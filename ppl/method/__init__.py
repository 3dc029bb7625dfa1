"""What every inference method is made of, below the methods: the `Method` interface and
its one `run` template (`base`), the `Result` every method fills (`result`), convergence
diagnostics (`diagnostics`), Pareto-smoothed importance weights (`psis`) and the warnings
kept with a result (`flags`)."""
