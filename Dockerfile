# syntax=docker/dockerfile:1
# The agent as a container image: the static binary on distroless/static
# (no shell, no package manager), run as the non-root user 65532, state in
# the volume /var/lib/agent. Build with `make docker VERSION=1.2.3`.
#
#   docker run -d --name agent \
#     -v agent-state:/var/lib/agent \
#     -v /etc/agent/agent.yaml:/etc/agent/agent.yaml:ro \
#     -v /var/log/app:/var/log/app:ro \
#     agent:1.2.3
#
# Without a mounted config it runs the packaged demo config
# (packaging/agent.yaml), which ships nothing.
ARG GO_VERSION=1.26

FROM golang:${GO_VERSION}-bookworm AS build
WORKDIR /src
COPY . .
ARG VERSION=dev
ARG COMMIT=unknown
ARG DATE=unknown
RUN --mount=type=cache,target=/go/pkg/mod \
    --mount=type=cache,target=/root/.cache/go-build \
    CGO_ENABLED=0 go build -trimpath \
      -ldflags "-s -w -X main.version=${VERSION} -X main.commit=${COMMIT} -X main.date=${DATE}" \
      -o /out/agent ./cmd/agent \
 && mkdir -p /out/state

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/agent /usr/bin/agent
COPY packaging/agent.yaml /etc/agent/agent.yaml
COPY --from=build --chown=65532:65532 /out/state /var/lib/agent
USER 65532:65532
VOLUME ["/var/lib/agent"]
# admin.listen defaults to 127.0.0.1:7219, unreachable from outside the
# container: set it to 0.0.0.0:7219 in the mounted config to scrape /metrics.
ENTRYPOINT ["/usr/bin/agent"]
CMD ["run", "-c", "/etc/agent/agent.yaml"]
