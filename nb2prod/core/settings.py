"""Environment variable names (typed settings follow)."""

# Set by ``nb2prod build`` for the papermill kernel; absent in an interactive kernel.
ENV_RUN_FILE = "NB2PROD_RUN_FILE"
ENV_NOTEBOOK_SHA = "NB2PROD_NOTEBOOK_SHA256"
ENV_PARAMETERS = "NB2PROD_PARAMETERS"
# Set by ``nb2prod retrain``: the production version's suite.json, which the candidate's
# reference data must also pass (written as validation-production.json/.html).
ENV_PRODUCTION_SUITE = "NB2PROD_PRODUCTION_SUITE"
# Set by ``nb2prod build`` / ``retrain`` for the kernel: the notebook papermill writes as
# it runs (every cell's source is there from the start) and the notebook it came from.
ENV_EXECUTED = "NB2PROD_EXECUTED"
ENV_NOTEBOOK = "NB2PROD_NOTEBOOK"
