"""Run a server process: uvicorn for every HTTP front, and the start-up banner."""

from __future__ import annotations

import asyncio
import logging
import os
import time

import uvicorn

from modelyard.server import Modelyard
from modelyard.settings import Settings

log = logging.getLogger("modelyard")


def run(settings: Settings, *, demo: bool = False, started: float | None = None) -> None:
    server = Modelyard(settings)
    config = uvicorn.Config(server.app, host=settings.host, port=settings.http_port,
                            log_level=settings.log_level, access_log=False,
                            timeout_graceful_shutdown=5, log_config=None)
    http = uvicorn.Server(config)
    begin = started if started is not None else time.perf_counter()

    async def main() -> None:
        task = asyncio.create_task(http.serve())
        while not http.started and not task.done():
            await asyncio.sleep(0.01)
        if http.started:
            _banner(settings, demo, time.perf_counter() - begin)
        await task

    asyncio.run(main())


def _banner(settings: Settings, demo: bool, seconds: float) -> None:
    url = f"http://{settings.host}:{settings.http_port}"
    log.info("ready in %.2f s (pid %d): KServe v2 HTTP on %s", seconds, os.getpid(), url)
    if demo:
        print(_TRY.format(url=url, host=f"{settings.host}:{settings.http_port}"), flush=True)


_TRY = """
modelyard is serving its demo models. Try:

  curl {url}/v2/repository/index -X POST
  curl {url}/v2/models/iris_onnx
  curl {url}/v2/models/iris_onnx/infer -d '{{"inputs":[{{"name":"x","shape":[1,4],"datatype":"FP32","data":[5.1,3.5,1.4,0.2]}}]}}'
  curl {url}/v2/models/iris_sklearn/infer -d '{{"inputs":[{{"name":"input","shape":[1,4],"datatype":"FP64","data":[6.7,3.0,5.2,2.3]}}]}}'
  curl {url}/v2/models/wordcount/infer -d '{{"inputs":[{{"name":"text","shape":[1,1],"datatype":"BYTES","data":["hello model yard"]}}]}}'

  python -c "import tritonclient.http as t, numpy as np; c=t.InferenceServerClient('{host}'); \\
i=t.InferInput('x',[1,4],'FP32'); i.set_data_from_numpy(np.array([[5.1,3.5,1.4,0.2]],np.float32)); \\
print(c.infer('iris_onnx',[i]).as_numpy('probabilities'))"

  modelyard list          # what the demo repository holds, without a server
Stop with Ctrl-C.
"""
