# syntax=docker/dockerfile:1

# Build a static binary: Airlock needs no cgo.
FROM golang:1.26-bookworm AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
RUN CGO_ENABLED=0 go build -trimpath -ldflags="-s -w" -o /out/airlock ./cmd/airlock

# The runtime image has no shell and runs as an unprivileged user. Upstream
# servers started with npx or uvx need an image with Node or Python: see
# README.md.
FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/airlock /usr/local/bin/airlock
USER nonroot:nonroot
EXPOSE 7420
ENTRYPOINT ["/usr/local/bin/airlock", "serve"]
# Listen on every interface inside the container; mount your config there.
CMD ["--listen", "0.0.0.0:7420", "-c", "/etc/airlock/airlock.yaml"]
