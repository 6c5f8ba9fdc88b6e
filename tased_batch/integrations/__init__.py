"""Orchestrator plugins: an Airflow 3 provider, Dagster assets and a Daft UDF (each an optional extra).

``common`` holds what they share and imports none of them: options checked against the schema
and turned into `tased-batch run` arguments, the run's status as the result an orchestrator keeps,
and the mapping of exit codes to a task's outcome.
"""
