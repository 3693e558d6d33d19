# syntax=docker/dockerfile:1
# The scoring consumer. Two stages: production dependencies are installed in the first, and only they,
# the source and the demo model reach the final image, which runs as the unprivileged `node` user.
# TypeScript runs as it is through tsx (a runtime dependency): there is no build step.
#
#   docker build -t onnx-rabbitmq-scorer .
#   docker build --build-arg NODE_MAJOR=24 -t onnx-rabbitmq-scorer .    # the previous LTS line
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

FROM node:${NODE_MAJOR}-slim AS runtime
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
USER node
EXPOSE 8080
CMD ["node", "--import", "tsx", "src/main.ts"]
