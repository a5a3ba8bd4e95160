# One image for both apps: `node dist/apps/gateway/src/main.js` or `node dist/apps/consumer/src/main.js`.
FROM node:24-slim AS build
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci --no-audit --no-fund
COPY tsconfig.json tsconfig.build.json nest-cli.json ./
COPY apps apps
COPY libs libs
COPY test test
COPY tools tools
COPY bench bench
RUN npx tsc -p tsconfig.build.json && npx tsc-alias -p tsconfig.build.json && npm prune --omit=dev

FROM node:24-slim
ENV NODE_ENV=production
WORKDIR /app
COPY --from=build /app/node_modules node_modules
COPY --from=build /app/dist dist
COPY package.json ./
# The consumer's state stores: the image's own folder, writable by the app's user (mount a volume per consumer to
# keep them across container re-creation; never one shared by two consumers).
RUN mkdir -p /var/lib/matrix-send/state && chown node:node /var/lib/matrix-send/state
ENV STATE_DIR=/var/lib/matrix-send/state
USER node
EXPOSE 8008 8009
CMD ["node", "dist/apps/gateway/src/main.js"]
