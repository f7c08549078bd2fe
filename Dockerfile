# One image with both binaries; compose picks the command. Built with the
# workspace's lock file; no OpenSSL, no libpq (rustls, diesel-async's driver).
FROM rust:1-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked -p auth-service -p main-backend

FROM debian:bookworm-slim
RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates curl \
    && rm -rf /var/lib/apt/lists/* && useradd --system --uid 10001 app
COPY --from=build /src/target/release/auth-service /src/target/release/main-backend /usr/local/bin/
USER app
WORKDIR /home/app
