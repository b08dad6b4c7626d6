#!/usr/bin/env bash
# The runtime base of the image for machines that cannot pull gcr.io/distroless/cc-debian12:
# the same contents, assembled from Debian's own packages. Called by dev/image.sh.
#
#   dev/image-base.sh BUILDAH_ARGS... -- TAG
#
# The base holds glibc, libgcc and the CA bundle (from the packages libc6, libgcc-s1 and
# ca-certificates), /etc/passwd and /etc/group with root, nobody and nonroot (65532), a home for
# nonroot and a /tmp, and nothing else: no shell, no package manager. The packages come from the
# machine's apt sources, so the base matches the glibc the binaries were linked against here.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
buildah_args=()
while (($#)) && [[ $1 != -- ]]; do
  buildah_args+=("$1")
  shift
done
shift
tag=$1
work="$PWD/target/image/base"
packages=(libc6 libgcc-s1 ca-certificates)

say() { printf '[image-base] %s\n' "$*"; }

rm -rf "$work"
mkdir -p "$work/debs" "$work/rootfs"
say "downloading ${packages[*]} from the machine's apt sources ..."
if ! (cd "$work/debs" && apt-get download "${packages[@]}" >/dev/null 2>&1); then
  apt-get update -qq
  (cd "$work/debs" && apt-get download "${packages[@]}" >/dev/null)
fi
for deb in "$work"/debs/*.deb; do
  dpkg-deb --extract "$deb" "$work/rootfs"
done

root="$work/rootfs"
# Debian builds ca-certificates.crt in the package's postinst; the same concatenation here.
mkdir -p "$root/etc/ssl/certs"
find "$root/usr/share/ca-certificates" -name '*.crt' -print0 | sort -z |
  xargs -0 cat >"$root/etc/ssl/certs/ca-certificates.crt"
rm -rf "${root:?}/usr/share/doc" "${root:?}/usr/share/man" "${root:?}/usr/share/lintian" \
  "${root:?}/usr/sbin" "${root:?}/usr/bin" "${root:?}/usr/lib/x86_64-linux-gnu/gconv" \
  "${root:?}/usr/share/locale"
cat >"$root/etc/passwd" <<'EOF'
root:x:0:0:root:/root:/sbin/nologin
nobody:x:65534:65534:nobody:/nonexistent:/sbin/nologin
nonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin
EOF
cat >"$root/etc/group" <<'EOF'
root:x:0:
nobody:x:65534:
nonroot:x:65532:
EOF
mkdir -p "$root/home/nonroot" "$root/tmp" "$root/root"
chown 65532:65532 "$root/home/nonroot"
chmod 0700 "$root/home/nonroot" "$root/root"
chmod 1777 "$root/tmp"

# shellcheck disable=SC2016 # ${Package} and ${Version} are dpkg-deb's fields, not the shell's
versions=$(for deb in "$work"/debs/*.deb; do dpkg-deb --show --showformat='${Package}=${Version} ' "$deb"; done)
say "packages: $versions"
container=$(buildah "${buildah_args[@]}" from scratch)
mount=$(buildah "${buildah_args[@]}" mount "$container")
cp -a "$root/." "$mount/"
buildah "${buildah_args[@]}" umount "$container" >/dev/null
buildah "${buildah_args[@]}" config --user 65532:65532 --workingdir /home/nonroot \
  --env PATH=/usr/local/bin:/usr/bin:/bin --env SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt \
  --label org.opencontainers.image.title=fetchreward-runtime-base \
  --label "org.opencontainers.image.description=glibc, libgcc and CA certificates from Debian packages: ${versions% }" \
  "$container"
buildah "${buildah_args[@]}" commit --quiet --rm "$container" "$tag" >/dev/null
say "built $tag"
