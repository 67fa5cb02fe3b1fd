"""Loads an MLflow model once with `mlflow.pyfunc.load_model` and predicts each case.

stdin: {"model": PATH_OR_URI, "cases": [{"name", "input", "dataframe": bool, "params": {..}|null}]}
(`dataframe`: the input is a dict of columns handed over as a pandas DataFrame).
stdout: {NAME: predictions, or {"error": "Type: message"} when predict raised}.
"""
import json
import sys

import mlflow
import pandas as pd

request = json.load(sys.stdin)
model = mlflow.pyfunc.load_model(request["model"])
results = {}
for case in request["cases"]:
    data = pd.DataFrame(case["input"]) if case.get("dataframe") else case["input"]
    try:
        results[case["name"]] = model.predict(data, params=case.get("params"))
    except Exception as error:  # reported to the test, which decides
        results[case["name"]] = {"error": f"{type(error).__name__}: {error}"}
json.dump(results, sys.stdout)
