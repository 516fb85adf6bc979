# syntax=docker/dockerfile:1
#
# dsv32-server image: OpenAI-compatible server for DeepSeek-V3.2-architecture models on CPU.
#
#   docker build -t dsv32-server .
#   docker run --rm -p 8000:8000 dsv32-server                      # the embedded demo model
#   docker run --rm -p 8000:8000 -v /path/to/checkpoints:/models:ro \
#     dsv32-server --model /models/DeepSeek-V3.2-tiny                # a checkpoint directory
#
# Flags go after the image name; every flag also has a DSV_* environment variable (-e DSV_...).
# SIGTERM (docker stop) drains: /health turns 503, running requests finish (up to
# DSV_DRAIN_TIMEOUT, default 30 s), then the server exits 0. Give docker stop a longer timeout
# than the drain (docker stop -t 40; compose: stop_grace_period).

# ---- build: compile TypeScript to dist/ ------------------------------------------------------
FROM node:20-bookworm-slim AS build
WORKDIR /app
# .npmrc (ignore-scripts=true) keeps every dependency install script from running: onnxruntime-node's
# would download CUDA/TensorRT libraries; the CPU binaries ship inside the npm package.
COPY package.json package-lock.json .npmrc ./
RUN npm ci --no-audit --no-fund
COPY tsconfig.json tsconfig.build.json ./
COPY src ./src
RUN npm run build

# ---- runtime: production dependencies, compiled JS, embedded model ----------------------------
FROM node:20-bookworm-slim AS runtime
WORKDIR /app
# GLIBC_TUNABLES: 2 MiB pages for malloc'd memory under THP "madvise" (src/common/huge_pages.ts).
ENV NODE_ENV=production \
    ORT_DISABLE_TELEMETRY=1 \
    GLIBC_TUNABLES=glibc.malloc.hugetlb=1 \
    DSV_HOST=0.0.0.0 \
    DSV_PORT=8000
COPY package.json package-lock.json .npmrc ./
# Production dependencies only; then drop the ONNX Runtime binaries of other platforms
# (the package bundles darwin/win32/linux x arm64/x64: ~290 MB -> ~45 MB).
RUN npm ci --omit=dev --no-audit --no-fund \
 && npm cache clean --force \
 && ort=node_modules/onnxruntime-node/bin \
 && find "$ort" -mindepth 2 -maxdepth 2 ! -name linux -exec rm -rf {} + \
 && find "$ort" -mindepth 3 -maxdepth 3 ! -name "$(node -p process.arch)" -exec rm -rf {} +
# gcc (+ libc headers) builds the native decode kernels on the first start, for the CPU the container runs
# on (src/engine/native/native_kernels.ts; -march=native, so they cannot be built with the image); node's
# headers ship in this image. Without them the server runs every step through ONNX Runtime.
RUN apt-get update -qq \
 && apt-get install -y -qq --no-install-recommends gcc libc6-dev \
 && rm -rf /var/lib/apt/lists/*
COPY --from=build /app/dist ./dist
COPY src/native ./src/native
COPY models ./models
COPY config ./config
# Checkpoints are mounted here (read-only is enough): --model /models/<dir> or DSV_MODEL.
RUN mkdir -p /models && chown node:node /models
VOLUME ["/models"]
# The app files stay root-owned (read-only for the server); run as the image's unprivileged user.
USER node
EXPOSE 8000
# /health is readiness: 200 while serving, 503 while draining. No curl in the slim image.
HEALTHCHECK --interval=15s --timeout=5s --start-period=60s --retries=3 \
  CMD ["node", "-e", "fetch('http://127.0.0.1:'+(process.env.DSV_PORT||8000)+'/health').then(r=>process.exit(r.ok?0:1),()=>process.exit(1))"]
# Exec form: node is PID 1 and receives SIGTERM itself (the server handles SIGTERM and SIGINT).
ENTRYPOINT ["node", "dist/src/main.js"]
# Arguments for the server (e.g. --model /models/x); none = the embedded model at models/default.
CMD []
