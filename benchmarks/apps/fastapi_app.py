"""A plain FastAPI endpoint, the way most users write one: a pydantic body, the model run inline
in a sync handler (FastAPI puts it on its thread pool), no batching."""

from __future__ import annotations

import os

import numpy as np
import onnxruntime as ort
import uvicorn
from fastapi import FastAPI
from pydantic import BaseModel

session = ort.InferenceSession(os.environ["BENCH_MODEL"], providers=["CPUExecutionProvider"])
app = FastAPI()


class Row(BaseModel):
    x: list[float]


class Prediction(BaseModel):
    y: list[float]


@app.post("/predict")
def predict(row: Row) -> Prediction:
    y = session.run(None, {"x": np.asarray([row.x], dtype=np.float32)})[0]
    return Prediction(y=y[0].tolist())


if __name__ == "__main__":
    uvicorn.run(
        app,
        host="127.0.0.1",
        port=int(os.environ["BENCH_PORT"]),
        access_log=False,
        log_level="warning",
    )
