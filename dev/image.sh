#!/usr/bin/env bash
# make image: build the OCI image from the Dockerfile with buildah, then check it without
# running a container.
#
#   IMAGE=localhost/fetchreward:dev   the tag to build
#   IMAGE_BASE=local                  local: a runtime base from Debian packages (dev/image-base.sh),
#                                     for machines without registry access; official: the
#                                     Dockerfile's pinned distroless base and rust builder
#
# With IMAGE_BASE=local the binaries are the host's release build (cargo build --release, with
# the profile-guided flags of dev/release-rustflags.sh),
# stripped into target/image/bin and taken by the Dockerfile's `prebuilt` stage; the host must
# be Debian bookworm, as the base is. The checks, on the image's mounted file system:
#   - each binary's --version runs under chroot as the image's user, who is not root;
#   - the files are where the chart's commands expect them, the binaries stripped, no shell;
#   - the CA bundle exists; the entrypoint is the CLI.
# Images live in buildah's storage under target/image/storage (vfs driver: no overlay needed).
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
root=$PWD
image=${IMAGE:-localhost/fetchreward:dev}
base_mode=${IMAGE_BASE:-local}
base_tag=localhost/fetchreward-runtime-base:bookworm
bins=(fetchreward fetchreward-vault fetchreward-writer fetchreward-ingestor)
storage="$root/target/image"
b=(buildah --root "$storage/storage" --runroot "$storage/run" --storage-driver vfs)

say() { printf '[image] %s\n' "$*"; }
fail() {
  say "FAILED: $*"
  exit 1
}

if ! command -v buildah >/dev/null; then
  say "installing buildah (Debian) ..."
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq buildah >/dev/null
fi
mkdir -p "$storage"

build_args=()
case $base_mode in
  local)
    say "release build of the binaries (cargo build --release) ..."
    RUSTFLAGS=$(bash dev/release-rustflags.sh) cargo build --release --locked --workspace --bins
    rm -rf "${storage:?}/bin"
    mkdir -p "$storage/bin"
    for bin in "${bins[@]}"; do
      strip --strip-all -o "$storage/bin/$bin" "target/release/$bin"
    done
    if ! "${b[@]}" inspect --type image "$base_tag" >/dev/null 2>&1; then
      bash dev/image-base.sh "${b[@]:1}" -- "$base_tag"
    fi
    build_args=(--build-arg BINARIES=prebuilt --build-arg "RUNTIME_IMAGE=$base_tag")
    ;;
  official) ;;
  *) fail "IMAGE_BASE is local or official, not $base_mode" ;;
esac

say "buildah build --isolation chroot ${build_args[*]} -t $image"
"${b[@]}" build --quiet --isolation chroot --layers "${build_args[@]}" -t "$image" . >/dev/null

# ---- checks on the image's file system -------------------------------------------------------
container=$("${b[@]}" from --pull-never "$image")
trap '"${b[@]}" rm "$container" >/dev/null' EXIT
mount=$("${b[@]}" mount "$container")

user=$("${b[@]}" inspect --type image --format '{{.OCIv1.Config.User}}' "$image")
uid=${user%%:*}
[[ $uid =~ ^[0-9]+$ && $uid != 0 ]] || fail "the image's user is '$user', not a numeric non-root uid"
grep -q "^[^:]*:x:$uid:" "$mount/etc/passwd" || fail "uid $uid is not in the image's /etc/passwd"
say "user $user ($(grep "^[^:]*:x:$uid:" "$mount/etc/passwd" | cut -d: -f1)), not root"

entrypoint=$("${b[@]}" inspect --type image --format '{{.OCIv1.Config.Entrypoint}}' "$image")
[[ $entrypoint == '[/usr/local/bin/fetchreward]' ]] || fail "entrypoint is $entrypoint"

version=$(cargo metadata --no-deps --format-version 1 |
  python3 -c 'import json, sys; print(json.load(sys.stdin)["packages"][0]["version"])')
for bin in "${bins[@]}"; do
  path="$mount/usr/local/bin/$bin"
  [[ -x $path ]] || fail "/usr/local/bin/$bin is missing or not executable"
  if readelf --sections --wide "$path" | grep -Eq ' \.(symtab|debug_[a-z]+) '; then
    fail "$bin is not stripped"
  fi
  out=$(chroot --userspec="$user" "$mount" "/usr/local/bin/$bin" --version) ||
    fail "$bin --version did not run in the image"
  [[ $out == "$bin $version" ]] || fail "$bin --version printed '$out', not '$bin $version'"
  say "$(printf '%-22s %6s KiB  %s' "$bin" "$(($(stat -c %s "$path") / 1024))" "$out")"
done

# Every binary a chart template runs is in the image.
while read -r expected; do
  [[ -x "$mount$expected" ]] || fail "the chart runs $expected, which the image lacks"
done < <(grep -rhoE '/usr/local/bin/[a-z-]+' helm/fetchreward/templates | sort -u)
say "the chart's commands are in the image"

[[ -s "$mount/etc/ssl/certs/ca-certificates.crt" ]] || fail "no CA bundle at /etc/ssl/certs"
for shell in bin/sh bin/bash usr/bin/sh; do
  [[ ! -e "$mount/$shell" ]] || fail "the image has a shell: /$shell"
done
say "CA bundle present, no shell"

size=$("${b[@]}" images --format '{{.Size}}' "$image" | head -n1)
files=$(du -sh --apparent-size "$mount" | cut -f1)
"${b[@]}" umount "$container" >/dev/null
say "image $image: $size ($files of files), every check passed"
