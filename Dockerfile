# syntax=docker/dockerfile:1
# The scoring consumer. Production dependencies are installed in the first stage, and only they, the
# source and the demo model reach the final image, which runs as the unprivileged `node` user.
# TypeScript runs as it is through tsx (a runtime dependency): there is no build step.
#
#   docker build -t onnx-rabbitmq-scorer .
#   docker build --build-arg NODE_MAJOR=24 -t onnx-rabbitmq-scorer .    # the previous LTS line
#   docker build --target python -t onnx-rabbitmq-scorer:python .       # with Python, for a score.py
#   docker build --target python --build-arg PYTHON_APT_PACKAGES="python3-sklearn python3-joblib" \
#                --build-arg PIP_PACKAGES="onnx==1.17.0" -t my-scorer .  # and the script's packages
ARG NODE_MAJOR=26

FROM node:${NODE_MAJOR}-slim AS deps
WORKDIR /app
# .npmrc before `npm ci`: it tells onnxruntime-node's install script to skip the CUDA download
# (the CPU binaries ship inside the package).
COPY .npmrc package.json package-lock.json ./
RUN npm ci --omit=dev --no-audit --no-fund && npm cache clean --force
# sharp (images) ships libvips as a platform package (@img/sharp-linux-x64 on this glibc image): fail the
# build here, not at the first image, if the registry did not give it one.
RUN node -e "require('sharp')"

# What both images share: the consumer, its dependencies and the demo model.
FROM node:${NODE_MAJOR}-slim AS app
ENV NODE_ENV=production \
    HTTP_PORT=8080 \
    MODEL_DIR=/app/models
WORKDIR /app
COPY --from=deps /app/node_modules ./node_modules
COPY package.json ./
COPY config ./config
COPY bin ./bin
COPY src ./src
# The demo model, so the image runs on its own; compose and Kubernetes mount the real model folder here.
COPY models ./models

# For a Python entry script (ENTRY_SCRIPT=/app/models/score.py): Debian's python3 and a virtual
# environment at /opt/venv that also sees Debian's packages (--system-site-packages), named by PYTHON.
# The script's packages: Debian's (PYTHON_APT_PACKAGES, e.g. python3-sklearn: no pip registry needed),
# pip's (PIP_PACKAGES), or a derived image that pip-installs a requirements file (see the README).
FROM app AS python
ARG PYTHON_APT_PACKAGES=""
ARG PIP_PACKAGES=""
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3 python3-venv ${PYTHON_APT_PACKAGES} \
 && rm -rf /var/lib/apt/lists/* \
 && python3 -m venv --system-site-packages /opt/venv \
 && if [ -n "${PIP_PACKAGES}" ]; then /opt/venv/bin/pip install --no-cache-dir ${PIP_PACKAGES}; fi
ENV PYTHON=/opt/venv/bin/python
USER node
EXPOSE 8080
CMD ["node", "--import", "tsx", "src/main.ts"]

# The default image (the last stage): no Python.
FROM app AS runtime
USER node
EXPOSE 8080
CMD ["node", "--import", "tsx", "src/main.ts"]
