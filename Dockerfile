# The tenantdb image: the operator (`operator`, the default) and the pooler agent (`agent`).
#   docker build -t tenantdb:0.1.0 .
# Layout, shared with the Docker-free build (scripts/build-images.sh): the node binary in
# /usr/local/bin, the compiled app in /app, user 1000:1000, entrypoint `node dist/cli/main.js`.
# Nothing is written to the root filesystem at run time (readOnlyRootFilesystem works).
ARG NODE_VERSION=24.21.0
ARG DEBIAN_SUITE=trixie

# --- build: npm packages from the lock file, TypeScript compiled, dev packages dropped --------
FROM node:${NODE_VERSION}-${DEBIAN_SUITE}-slim AS build
WORKDIR /src
COPY package.json package-lock.json ./
# --ignore-scripts: the dev packages' install scripts (a second Node, embedded PostgreSQL
# binaries) serve the tests, not the image.
RUN npm ci --no-audit --no-fund --ignore-scripts
COPY tsconfig.json tsconfig.build.json ./
COPY src ./src
COPY scripts/bundle.ts ./scripts/
# The CLI bundled with its packages into dist/cli/main.js (scripts/bundle.ts: about 40 MiB less
# memory at run time). Type declarations, source maps and docs of the packages are never loaded
# at run time (40 MB).
RUN npx tsc -p tsconfig.build.json \
 && npx tsx scripts/bundle.ts \
 && npm prune --omit=dev --ignore-scripts --no-audit --no-fund \
 && find node_modules \( -name '*.map' -o -name '*.d.ts' -o -name '*.d.mts' -o -name '*.d.cts' -o -iname '*.md' \) -type f -delete \
 && rm -rf node_modules/@types

# --- run: Debian slim, the node binary alone (no npm, no corepack), the app -------------------
FROM debian:${DEBIAN_SUITE}-slim
RUN groupadd --gid 1000 tenantdb \
 && useradd --uid 1000 --gid 1000 --home-dir /app --no-create-home --shell /usr/sbin/nologin tenantdb
COPY --from=build /usr/local/bin/node /usr/local/bin/node
WORKDIR /app
COPY --from=build /src/package.json ./
COPY --from=build /src/node_modules ./node_modules
COPY --from=build /src/dist ./dist
ENV NODE_ENV=production
# Numeric, so that runAsNonRoot can be verified by the kubelet.
USER 1000:1000
ENTRYPOINT ["node", "dist/cli/main.js"]
CMD ["operator"]
