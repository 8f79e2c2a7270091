# syntax=docker/dockerfile:1
#
# ExecDB container image: a static binary on distroless, running as the nonroot user.
#
#   docker build -t execdb .
#   docker run --rm -p 127.0.0.1:5003:5003 execdb                     # SQLite in /var/lib/execdb
#   docker run --rm execdb serve --help
#
# See docker-compose.yml for ExecDB with PostgreSQL and RabbitMQ.

FROM golang:1.26 AS build
WORKDIR /src
# Modules first, in their own layer: it is rebuilt only when go.mod or go.sum change.
COPY go.mod go.sum ./
RUN go mod download && go mod verify
COPY . .
# The SQLite driver is pure Go (modernc.org/sqlite), so the binary needs no cgo and no libc.
RUN --mount=type=cache,target=/root/.cache/go-build \
    CGO_ENABLED=0 go build -trimpath -ldflags='-s -w' -o /out/execdb ./cmd/execdb
# The working directory of the final image, owned by the nonroot user (65532): the default
# EXECDB_DB=sqlite:execdb.db creates its database (and -wal, -shm files) there.
RUN mkdir -p /out/data

FROM gcr.io/distroless/static-debian12:nonroot
LABEL org.opencontainers.image.title="execdb" \
      org.opencontainers.image.description="ExecDB: execution state of Taskotron jobs" \
      org.opencontainers.image.source="https://github.com/fedora-qa/execdb"
COPY --from=build /out/execdb /execdb
COPY --from=build --chown=65532:65532 /out/data /var/lib/execdb
WORKDIR /var/lib/execdb
USER 65532:65532
# Listen on every interface of the container; publish the port deliberately (-p / ports:).
# Writes from outside the container are not from loopback, so they need EXECDB_TOKENS_FILE.
ENV EXECDB_LISTEN=0.0.0.0:5003
EXPOSE 5003
ENTRYPOINT ["/execdb"]
CMD ["serve"]
