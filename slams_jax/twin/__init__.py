"""Twin experiments on Lorenz-63 and Lorenz-96 (DAPPER setups): the models, score priors, filter and smoother.

Along the data flow: :mod:`.lorenz` (dynamics, setups, test data), :mod:`.settings` (the typed config),
:mod:`.networks`, :mod:`.training`, :mod:`.model` (the trained priors as the posterior core sees them),
:mod:`.assimilation` (filter and smoother), :mod:`.experiment` (the commands of ``python -m slams_jax.twin``).
Nothing is imported here, so :mod:`.lorenz` stays usable without the runtime.
"""
