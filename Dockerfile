# Multi-stage build of the one nhsid binary onto a distroless, non-root base.
# Not built on the development machines (no Docker engine there); kept
# minimal and reviewable.
FROM golang:1.26 AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
ARG VERSION=dev
RUN CGO_ENABLED=0 go build -trimpath -ldflags "-s -w -X main.version=${VERSION}" -o /out/nhsid ./cmd/nhsid

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/nhsid /nhsid
USER nonroot:nonroot
EXPOSE 8080 8081
ENTRYPOINT ["/nhsid"]
CMD ["serve", "--config", "/etc/nhsid/nhsid.yaml"]
