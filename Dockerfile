# syntax=docker/dockerfile:1

# Build a static binary: Airlock needs no cgo.
FROM golang:1.26-bookworm AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
RUN CGO_ENABLED=0 go build -trimpath -ldflags="-s -w" -o /out/airlock ./cmd/airlock
# The state directory must exist and belong to the user Airlock runs as.
RUN mkdir -p /out/state

# The runtime image has no shell and runs as an unprivileged user. Upstream
# servers started with npx or uvx need an image with Node or Python: see
# README.md.
FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/airlock /usr/local/bin/airlock
COPY --from=build --chown=nonroot:nonroot /out/state /var/lib/airlock
USER nonroot:nonroot
# The database, the admin token and the running broker's address.
ENV AIRLOCK_STATE_DIR=/var/lib/airlock
VOLUME /var/lib/airlock
EXPOSE 7420
ENTRYPOINT ["/usr/local/bin/airlock", "serve"]
# Listen on every interface inside the container; mount your config there.
# Beyond loopback, serve starts only when the config has an auth section
# (agent tokens, OAuth, or an explicit auth: {anonymous: true}): the image
# never runs an open broker. See README.md, "Docker", and docs/auth.md.
CMD ["--listen", "0.0.0.0:7420", "-c", "/etc/airlock/airlock.yaml"]
