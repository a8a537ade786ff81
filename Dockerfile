# gameraft in a container: one node per container (`gameraft serve`).
#
#   docker build -t gameraft .
#   docker compose up        # a local 3-node cluster (docker-compose.yml)
#
# Every setting is a flag or an environment variable (README "Configuration");
# the ENV lines below are the image's defaults, the compose file and the ECS
# task definition add the rest. tests/cluster/t14_deploy_files.rs reads this
# file's ENV, ENTRYPOINT and HEALTHCHECK lines and starts nodes as they say.

# Build stage: the locked dependencies, a release build. No system protoc:
# build.rs compiles proto/raft.proto with protox.
FROM rust:1.95-slim-trixie AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked --bin gameraft \
 && install -m 0755 target/release/gameraft /usr/local/bin/gameraft

# Runtime stage: the binary, a non-root user, and the data volume. The same
# Debian release as the build stage, so the binary finds the glibc it was
# linked against.
FROM debian:trixie-slim
RUN useradd --system --uid 10001 --user-group --home-dir /data --no-create-home gameraft \
 && mkdir /data \
 && chown gameraft:gameraft /data
COPY --from=build /usr/local/bin/gameraft /usr/local/bin/gameraft
ENV DATA_DIR=/data
ENV HTTP_ADDR=0.0.0.0:8080
ENV RAFT_ADDR=0.0.0.0:5000
USER gameraft
VOLUME ["/data"]
# 8080: the HTTP API; 5000: Raft between nodes (peers only).
EXPOSE 8080 5000
# Healthy once the node is a member and a leader is known (`GET /ready`).
# `gameraft probe` is the client: the image has no curl.
HEALTHCHECK --interval=10s --timeout=3s --start-period=60s --retries=3 CMD ["gameraft", "probe", "http://127.0.0.1:8080/ready"]
ENTRYPOINT ["gameraft", "serve"]
