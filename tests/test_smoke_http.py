from __future__ import annotations

import numpy as np
import tritonclient.http as httpclient

from tests.server_process import ServerProcess


def test_addsub_binary_and_json(server: ServerProcess) -> None:
    client = httpclient.InferenceServerClient(server.http_addr)
    a = np.arange(8, dtype=np.float32).reshape(2, 4)
    b = np.ones((2, 4), dtype=np.int32)
    for binary in (True, False):
        i0 = httpclient.InferInput("INPUT0", [2, 4], "FP32")
        i0.set_data_from_numpy(a, binary_data=binary)
        i1 = httpclient.InferInput("INPUT1", [2, 4], "INT32")
        i1.set_data_from_numpy(b, binary_data=binary)
        outs = [httpclient.InferRequestedOutput(n, binary_data=binary) for n in ("OUTPUT0", "OUTPUT1")]
        result = client.infer("addsub", [i0, i1], outputs=outs)
        np.testing.assert_allclose(result.as_numpy("OUTPUT0"), (a + b) * 10)
        np.testing.assert_allclose(result.as_numpy("OUTPUT1"), a - b)
        result = client.infer("addsub", [i0, i1], model_version="1", outputs=outs)
        np.testing.assert_allclose(result.as_numpy("OUTPUT0"), a + b)
