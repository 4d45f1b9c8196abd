#!/usr/bin/env bash
# Builds the images of the real-node cluster without Docker or any image registry, as OCI archives
# cached in ~/.cache/tenantdb/images by a hash of their inputs (a warm run takes seconds):
#   - the pause image the CRI names as its sandbox image, from Kubernetes' own pause.c;
#   - tenantdb: the operator and the pooler agent (Node from the npm `node` package, the compiled
#     app and its production packages) on a Debian stable root filesystem, user 1000:1000;
#   - tenantdb-pgbouncer: Debian stable's PgBouncer (>= 1.21: prepared statements in transaction
#     pooling), user 1000:1000 like the agent beside it (the chart's pooler): the same packages as
#     Dockerfile.pgbouncer, by the same steps, on the minbase tree that Debian's slim images are;
#   - tenantdb-psql: psql for the application pods of the cluster tests (never part of a release).
# The same layout as Dockerfile and Dockerfile.pgbouncer.
# Root filesystems come from mmdebstrap, images from buildah (its own storage, vfs, in a temporary
# folder: nothing is left on the host). Prints one line per image: "<image name> <archive>", for
# `ctr images import`. Needs root (mmdebstrap --mode=root).
set -Eeuo pipefail
# A failed step says which: set -e alone exits without a word.
trap 'echo "tenantdb: build-images.sh: \"$BASH_COMMAND\" failed (exit $?) at line $LINENO" >&2' ERR

here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/.." && pwd)
# shellcheck source=control-plane-versions.sh
. "$here/control-plane-versions.sh"
# shellcheck source=apt-ensure.sh
. "$here/apt-ensure.sh"

[ "$(id -u)" = 0 ] || { echo "tenantdb: building the images needs root (mmdebstrap and buildah run as root)" >&2; exit 1; }

cache=${TENANTDB_CACHE:-$HOME/.cache/tenantdb}/images
mkdir -p "$cache"
cache_lock_images() {
  exec 8>"$cache/.lock"
  if ! flock -n 8; then
    echo "waiting for another build of the images to finish" >&2
    flock 8
  fi
}
cache_lock_images

version=$(sed -n 's/^  "version": "\(.*\)",$/\1/p' "$repo/package.json" | head -1)
suite=stable
node_bin=$repo/node_modules/node/bin/node
[ -x "$node_bin" ] || { echo "tenantdb: $node_bin is missing; run npm install" >&2; exit 1; }
node_version=$("$node_bin" --version)

# Local names: `localhost/` is a domain to the CRI, so a pod's `localhost/tenantdb:0.1.0` is looked up
# as it is (a bare `tenantdb:0.1.0` would be expanded to a public registry's name), and ctr import
# keeps an archive's name. Nothing is ever pulled: the node has these images or none.
pause_ref=localhost/tenantdb-pause:3.10
app_ref=localhost/tenantdb:$version
pgbouncer_ref=localhost/tenantdb-pgbouncer:$version
psql_ref=localhost/tenantdb-psql:$version

sha() { sha256sum | cut -c1-16; }
script_sum=$(sha <"$0")
# The files that go into the app image: the manifest, the lock, the compiler and bundler settings and the sources.
app_files() { (cd "$repo" && git ls-files -co --exclude-standard package.json package-lock.json tsconfig.json tsconfig.build.json scripts/bundle.ts src | sort); }
app_sum=$( (
  echo "$script_sum $suite $node_version"
  cd "$repo" && app_files | xargs -d '\n' sha256sum
) | sha)
pause_sum=$(echo "$script_sum $KUBE_VERSION" | sha)
pgbouncer_sum=$(echo "$script_sum $suite" | sha)
psql_sum=$(echo "$script_sum $suite psql" | sha)

pause_tar=$cache/pause-$pause_sum.tar
app_tar=$cache/tenantdb-$app_sum.tar
pgbouncer_tar=$cache/tenantdb-pgbouncer-$pgbouncer_sum.tar
psql_tar=$cache/tenantdb-psql-$psql_sum.tar

if [ ! -s "$pause_tar" ] || [ ! -s "$app_tar" ] || [ ! -s "$pgbouncer_tar" ] || [ ! -s "$psql_tar" ]; then
  apt_ensure mmdebstrap buildah runc gcc libc6-dev binutils
  mirror=$(debian_mirror)
  work=$(mktemp -d)
  # buildah keeps a blob cache in /var/lib/containers whatever its storage flags: removed after if
  # it was not there before.
  keep_varlib=
  [ ! -e /var/lib/containers ] || keep_varlib=1
  trap 'rm -rf "$work"; [ -n "$keep_varlib" ] || rm -rf /var/lib/containers' EXIT
  # buildah with its own storage: no overlay mounts or images left behind.
  bah() { buildah --root "$work/storage" --runroot "$work/run" --storage-driver vfs "$@"; }

  # rootfs OUT VARIANT PKGS [MMDEBSTRAP OPTION...]: a Debian $suite tree without docs, man pages or
  # locales (licences kept).
  rootfs() {
    local out=$1 variant=$2 pkgs=$3
    shift 3
    mmdebstrap --quiet --mode=root --variant="$variant" ${pkgs:+--include="$pkgs"} \
      --dpkgopt='path-exclude=/usr/share/doc/*' --dpkgopt='path-include=/usr/share/doc/*/copyright' \
      --dpkgopt='path-exclude=/usr/share/man/*' --dpkgopt='path-exclude=/usr/share/locale/*' \
      "$@" "$suite" "$out" "$mirror" >&2
  }
  # commit CONTAINER REF OUT: an OCI archive under the image's full name, moved into place whole.
  commit() {
    bah commit --quiet --format oci "$1" "oci-archive:$3.tmp:$2" >/dev/null
    mv "$3.tmp" "$3"
    bah rm "$1" >/dev/null
  }

  if [ ! -s "$pause_tar" ]; then
    echo "building $pause_ref" >&2
    # shellcheck source=go-toolchain.sh
    . "$here/go-toolchain.sh"
    ensure_go
    mkdir "$work/pause"
    src=$(cd "$work/pause" && GOTOOLCHAIN=local GOFLAGS=-mod=mod go mod download -json "k8s.io/kubernetes@$KUBE_VERSION" | sed -n 's/.*"Dir": "\(.*\)",/\1/p')
    gcc -Os -static -DVERSION="$KUBE_VERSION-tenantdb" -o "$work/pause/pause" "$src/build/pause/linux/pause.c"
    strip "$work/pause/pause"
    c=$(bah from scratch)
    bah copy "$c" "$work/pause/pause" /pause >/dev/null
    bah config --entrypoint '["/pause"]' --user 65535:65535 "$c"
    commit "$c" "$pause_ref" "$pause_tar"
  fi

  if [ ! -s "$app_tar" ]; then
    echo "building $app_ref" >&2
    rootfs "$work/app-rootfs.tar" essential libstdc++6,ca-certificates
    x=$work/app-extra
    mkdir -p "$x/usr/local/bin" "$x/app" "$x/etc"
    # The compiled operator and agent with their production packages only.
    cp "$repo/package.json" "$repo/package-lock.json" "$x/app/"
    (cd "$x/app" && npm install --omit=dev --ignore-scripts --no-audit --no-fund --loglevel=error >&2 && rm -f package-lock.json)
    # Type declarations, source maps and docs of the packages are never loaded at run time.
    find "$x/app/node_modules" \( -name '*.map' -o -name '*.d.ts' -o -name '*.d.mts' -o -name '*.d.cts' -o -iname '*.md' \) -type f -delete
    rm -rf "$x/app/node_modules/@types" "$x/app/node_modules/.package-lock.json"
    (cd "$repo" && "$repo/node_modules/.bin/tsc" -p tsconfig.build.json --outDir "$x/app/dist" --sourceMap false)
    # The CLI bundled with its packages, as the Dockerfile does (scripts/bundle.ts).
    (cd "$repo" && "$repo/node_modules/.bin/tsx" scripts/bundle.ts "$x/app/dist")
    cp "$node_bin" "$x/usr/local/bin/node"
    strip "$x/usr/local/bin/node"
    # A numeric user (runAsNonRoot can verify it) with a name for tools that look one up.
    tar -xOf "$work/app-rootfs.tar" ./etc/passwd >"$x/etc/passwd"
    tar -xOf "$work/app-rootfs.tar" ./etc/group >"$x/etc/group"
    echo 'tenantdb:x:1000:1000:tenantdb:/app:/usr/sbin/nologin' >>"$x/etc/passwd"
    echo 'tenantdb:x:1000:' >>"$x/etc/group"
    c=$(bah from scratch)
    bah add "$c" "$work/app-rootfs.tar" / >/dev/null
    bah copy "$c" "$x" / >/dev/null
    bah config --env PATH=/usr/local/bin:/usr/bin:/bin --env NODE_ENV=production --workingdir /app \
      --user 1000:1000 --entrypoint '["node","dist/cli/main.js"]' --cmd operator \
      --label org.opencontainers.image.title=tenantdb --label "org.opencontainers.image.version=$version" "$c"
    commit "$c" "$app_ref" "$app_tar"
  fi

  if [ ! -s "$pgbouncer_tar" ]; then
    echo "building $pgbouncer_ref" >&2
    # Dockerfile.pgbouncer's steps, run in the tree: the package's binary and the libraries it needs,
    # without postgresql-common (perl, ssl-cert and a baked snakeoil key come with it; PgBouncer
    # needs none of them), and the user 1000:1000. Keep the two in step.
    cat >"$work/pgbouncer-install.sh" <<'SH'
set -eu
cd /tmp
apt-get download -qq pgbouncer
deb=$(echo pgbouncer_*.deb)
dpkg --compare-versions "$(dpkg-deb -f "$deb" Version)" ge 1.21
depends=$(dpkg-deb -f "$deb" Depends | tr ',' '\n' | sed -E 's/\(.*\)//; s/\|.*//; s/ //g' | grep -vx 'postgresql-common')
# One package per word.
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends ca-certificates $depends >/dev/null
dpkg-deb --fsys-tarfile "$deb" | tar -x -C / ./usr/sbin/pgbouncer
dpkg-deb -f "$deb" Version >/tmp/pgbouncer-version
apt-get clean
groupadd --gid 1000 pgbouncer
useradd --uid 1000 --gid 1000 --home-dir /nonexistent --no-create-home --shell /usr/sbin/nologin pgbouncer
/usr/sbin/pgbouncer --version >/dev/null
SH
    # minbase: the packages of a Debian slim image (essential, required, apt).
    rootfs "$work/pgb-rootfs.tar" minbase "" \
      --customize-hook="chroot \"\$1\" sh <'$work/pgbouncer-install.sh'" \
      --customize-hook="download /tmp/pgbouncer-version $work/pgbouncer-version"
    pgb_version=$(cat "$work/pgbouncer-version")
    c=$(bah from scratch)
    bah add "$c" "$work/pgb-rootfs.tar" / >/dev/null
    bah config --env PATH=/usr/local/bin:/usr/bin:/bin --workingdir / --user 1000:1000 --port 6432 \
      --entrypoint '["/usr/sbin/pgbouncer"]' --cmd /etc/pgbouncer/config/pgbouncer.ini \
      --label org.opencontainers.image.title=tenantdb-pgbouncer --label "org.opencontainers.image.version=$version" \
      --label "dev.tenantdb.pgbouncer-version=$pgb_version" "$c"
    commit "$c" "$pgbouncer_ref" "$pgbouncer_tar"
  fi

  if [ ! -s "$psql_tar" ]; then
    echo "building $psql_ref" >&2
    # The cluster tests' application pods: a shell and psql, as user 1000:1000.
    rootfs "$work/psql-rootfs.tar" essential postgresql-client
    x=$work/psql-extra
    mkdir -p "$x/etc"
    tar -xOf "$work/psql-rootfs.tar" ./etc/passwd >"$x/etc/passwd"
    tar -xOf "$work/psql-rootfs.tar" ./etc/group >"$x/etc/group"
    echo 'app:x:1000:1000:app:/nonexistent:/usr/sbin/nologin' >>"$x/etc/passwd"
    echo 'app:x:1000:' >>"$x/etc/group"
    c=$(bah from scratch)
    bah add "$c" "$work/psql-rootfs.tar" / >/dev/null
    bah copy "$c" "$x" / >/dev/null
    bah config --env PATH=/usr/local/bin:/usr/bin:/bin --workingdir / --user 1000:1000 --cmd psql \
      --label org.opencontainers.image.title=tenantdb-psql --label "org.opencontainers.image.version=$version" "$c"
    commit "$c" "$psql_ref" "$psql_tar"
  fi
fi
# Archives of other inputs (older sources, another checkout's) go once no build has used them for a
# day: two checkouts building in turn do not delete each other's.
touch "$pause_tar" "$app_tar" "$pgbouncer_tar" "$psql_tar"
find "$cache" -maxdepth 1 -name '*.tar' -mtime +0 -delete

echo "$pause_ref $pause_tar"
echo "$app_ref $app_tar"
echo "$pgbouncer_ref $pgbouncer_tar"
echo "$psql_ref $psql_tar"
