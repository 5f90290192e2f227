# modelyard's container image: a slim CPU Python base, a non-root user, the runtimes as extras.
#
#   docker build -t modelyard .                                   # ONNX, sklearn, XGBoost, LightGBM
#   docker build -t modelyard:llm --build-arg EXTRAS=all,llm,embeddings .   # + GGUF LLMs
#   docker run -p 8000:8000 -p 8001:8001 -v "$PWD/models:/models:ro" modelyard
#
# The model repository is the volume /models (MODELYARD_REPOSITORY); every `serve` option is
# also an environment variable (MODELYARD_*), so `docker run -e MODELYARD_API_KEY=...` works.
# With `llm` among the extras, llama.cpp is compiled here as the Makefile does: portable
# (GGML_NATIVE=OFF, the native build dies with SIGILL on AMX CPUs) and with --no-cache-dir
# (pip's wheel cache ignores CMAKE_ARGS). See docs/kubernetes.md.

ARG BASE_IMAGE=python:3.12-slim

FROM ${BASE_IMAGE} AS build
ARG EXTRAS=all
ARG LLAMA_VERSION=0.3.36
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python3 -m venv /opt/modelyard && /opt/modelyard/bin/pip install -q --upgrade pip
# a compiler only where llama.cpp is built; it stays in this stage
RUN case ",${EXTRAS}," in *,llm,*) \
      apt-get update -qq \
      && apt-get install -y -qq --no-install-recommends build-essential cmake >/dev/null \
      && CMAKE_ARGS="-DGGML_NATIVE=OFF" /opt/modelyard/bin/pip wheel -q --no-deps \
           -w /wheels "llama-cpp-python==${LLAMA_VERSION}" \
      && /opt/modelyard/bin/pip install -q --no-deps /wheels/*.whl ;; \
    esac
WORKDIR /src
COPY pyproject.toml README.md ./
COPY src ./src
RUN /opt/modelyard/bin/pip install -q ".[${EXTRAS}]"

FROM ${BASE_IMAGE}
ARG EXTRAS=all
LABEL org.opencontainers.image.title="modelyard" \
      org.opencontainers.image.description="One inference server for every kind of model" \
      org.opencontainers.image.licenses="Apache-2.0" \
      io.modelyard.extras="${EXTRAS}"
# llama.cpp, onnxruntime, LightGBM and XGBoost use OpenMP at run time
RUN apt-get update -qq \
    && apt-get install -y -qq --no-install-recommends libgomp1 >/dev/null \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --uid 10001 --user-group --create-home --shell /usr/sbin/nologin modelyard \
    && mkdir -p /models && chown modelyard:modelyard /models
COPY --from=build /opt/modelyard /opt/modelyard
ENV PATH=/opt/modelyard/bin:${PATH} \
    PYTHONUNBUFFERED=1 \
    MODELYARD_HOST=0.0.0.0 \
    MODELYARD_HTTP_PORT=8000 \
    MODELYARD_GRPC_PORT=8001 \
    MODELYARD_REPOSITORY=/models \
    MODELYARD_CACHE=/home/modelyard/.cache/modelyard
USER 10001:10001
WORKDIR /home/modelyard
VOLUME ["/models"]
EXPOSE 8000 8001
# ready = the start-up models loaded and not draining; with API keys set the route needs one,
# so the check sends the first key of MODELYARD_API_KEY (curl is not in a slim image)
HEALTHCHECK --interval=10s --timeout=3s --start-period=30s --retries=3 \
    CMD ["python3", "-c", "import os, urllib.request as u; key = os.environ.get('MODELYARD_API_KEY', '').split(',')[0].strip(); u.urlopen(u.Request('http://127.0.0.1:%s/v2/health/ready' % os.environ.get('MODELYARD_HTTP_PORT', '8000'), headers={'Authorization': 'Bearer ' + key} if key else {}), timeout=2)"]
ENTRYPOINT ["modelyard"]
CMD ["serve"]
