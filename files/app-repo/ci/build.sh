#!/bin/sh
# Build one image with rootless BuildKit (no Docker daemon, no privileged container) and push it to the
# project's registry, tagged with the commit SHA, with the registry as layer cache.
#   ci/build.sh SERVICE CONTEXT [DOCKERFILE_DIR] [TAG]
set -eu
service=$1
context=$2
dockerfile_dir=${3:-$context}
tag=${4:-$CI_COMMIT_SHA}
image="$CI_REGISTRY_IMAGE/$service"

# Registry login for BuildKit: the job token may push to this project's registry.
mkdir -p "$HOME/.docker" "$HOME/.config/buildkit" built
auth=$(printf '%s:%s' "$CI_REGISTRY_USER" "$CI_REGISTRY_PASSWORD" | base64 | tr -d '\n')
printf '{"auths":{"%s":{"auth":"%s"}}}\n' "$CI_REGISTRY" "$auth" > "$HOME/.docker/config.json"

# Trust the lab's private CA for the registry (the runner passes GitLab's CA file to every job).
ca_file=${CI_SERVER_TLS_CA_FILE:-/etc/gitlab-runner/certs/ca.crt}
printf '[registry."%s"]\n  ca = ["%s"]\n' "$CI_REGISTRY" "$ca_file" > "$HOME/.config/buildkit/buildkitd.toml"
export BUILDKITD_FLAGS="${BUILDKITD_FLAGS:-} --config=$HOME/.config/buildkit/buildkitd.toml"

echo "building $image:$tag from $context"
buildctl-daemonless.sh build \
  --frontend dockerfile.v0 \
  --local context="$context" \
  --local dockerfile="$dockerfile_dir" \
  --opt label:org.opencontainers.image.source="$CI_PROJECT_URL" \
  --opt label:org.opencontainers.image.revision="$CI_COMMIT_SHA" \
  --opt label:org.opencontainers.image.title="$service" \
  --import-cache type=registry,ref="$image:buildcache" \
  --export-cache type=registry,ref="$image:buildcache",mode=max \
  --output type=image,name="$image:$tag",push=true

# Tell the bump job which services this pipeline built (artifact).
echo "$tag" > "built/$service"
