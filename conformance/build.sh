#!/bin/bash
# Build the opencontainers runtime-tools validation suite offline, from Debian
# packages only.
#
#   conformance/build.sh     # build (or reuse the cached build); prints the
#                            # suite directory on stdout, progress on stderr
#
# The newest Debian source package (trixie) carries validation/ and cmd/, the
# bookworm -dev package does not, so the source comes from `apt-get source`
# through a deb-src entry for trixie that this script adds next to the
# system's own sources (same URI, read from the system's sources file).
# Everything is compiled in GOPATH mode against Debian's golang-go and
# golang-*-dev packages; github.com/mndrix/tap-go (not in Debian) is replaced
# by our own API-compatible conformance/tap.
#
# It also installs the reference runtimes runc and crun (Debian packages).
#
# Output: ${RUNV_CACHE:-/var/cache/runv}/conformance/suite-<key>/ with
#   runtimetest            static binary run inside the container
#   rootfs-amd64.tar.gz    the suite's test rootfs (from the source tree)
#   validation/<name>.t    one program per validation/<name>/ directory
#   VERSION                the Debian source version
# and the symlink .../conformance/suite -> suite-<key>. <key> hashes the
# source version, this harness (build.sh + tap/) and the Go version, so a
# rerun with nothing changed skips the build.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
CACHE=${RUNV_CACHE:-/var/cache/runv}/conformance
SRCPKG=golang-github-opencontainers-runtime-tools
SRC_SUITE=trixie
SRC_LIST=/etc/apt/sources.list.d/runv-conformance-${SRC_SUITE}-src.sources
export DEBIAN_FRONTEND=noninteractive

# Packages the validation programs and runtimetest import (GOPATH mode).
GO_DEBS=(
  golang-go
  golang-github-blang-semver-dev
  golang-github-google-uuid-dev
  golang-github-hashicorp-go-multierror-dev
  golang-github-mrunalp-fileutils-dev
  golang-github-opencontainers-selinux-dev
  golang-github-opencontainers-specs-dev
  golang-github-sirupsen-logrus-dev
  golang-github-urfave-cli-dev
  golang-github-xeipuuv-gojsonschema-dev
  golang-gocapability-dev
  golang-golang-x-sys-dev
  golang-gopkg-yaml.v2-dev
)
# Tools the build itself and the suite at run time need, and the reference
# runtimes run.py compares runv with.
TOOL_DEBS=(dpkg-dev patch tar xz-utils ca-certificates util-linux mount)
REF_RUNTIME_DEBS=(runc crun)

log() { printf '[conformance/build] %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

[[ $(id -u) == 0 ]] || die "must run as root (apt-get, /var/cache)"

# --- apt: a deb-src entry for trixie, derived from the system's sources -----

system_uri() {
  # The URI of the Debian archive the system already uses for its own
  # release: the first URIs of a deb822 stanza whose Suites name this
  # release's codename (not -security); else a one-line sources.list entry.
  local f uri codename
  codename=$(. /etc/os-release && echo "${VERSION_CODENAME:-}")
  [[ -n $codename ]] || codename=bookworm
  for f in /etc/apt/sources.list.d/*.sources; do
    [[ -e $f && $f != "$SRC_LIST" ]] || continue
    uri=$(awk -v cn="$codename" '
      BEGIN { RS = ""; FS = "\n" }
      {
        u = ""; ok = 0
        for (i = 1; i <= NF; i++) {
          if ($i ~ /^URIs:/) { u = $i; sub(/^URIs:[ \t]*/, "", u); split(u, a, /[ \t]+/); u = a[1] }
          if ($i ~ /^Suites:/) {
            n = split($i, s, /[ \t]+/)
            for (j = 2; j <= n; j++) if (s[j] == cn || s[j] == cn "-updates") ok = 1
          }
        }
        if (u != "" && ok) { print u; exit }
      }' "$f")
    [[ -n $uri ]] && { echo "$uri"; return; }
  done
  if [[ -f /etc/apt/sources.list ]]; then
    uri=$(awk -v cn="$codename" '$1 == "deb" { for (i = 2; i < NF; i++) if ($i ~ /^[a-z+]+:\/\// && $(i + 1) == cn) { print $i; exit } }' /etc/apt/sources.list)
    [[ -n $uri ]] && { echo "$uri"; return; }
  fi
  return 1
}

APT_UPDATED=0
apt_update() {
  ((APT_UPDATED)) && return 0
  log "apt-get update"
  apt-get update -q >/dev/null || die "apt-get update failed"
  APT_UPDATED=1
}

ensure_src_entry() {
  local uri keyring=/usr/share/keyrings/debian-archive-keyring.gpg want
  uri=$(system_uri) || die "cannot find the Debian archive URI in /etc/apt/sources.list{,.d}"
  want="Types: deb-src
URIs: $uri
Suites: $SRC_SUITE
Components: main"
  [[ -f $keyring ]] && want+=$'\n'"Signed-By: $keyring"
  if [[ ! -f $SRC_LIST ]] || [[ "$(cat "$SRC_LIST")" != "$want" ]]; then
    log "adding deb-src entry for $SRC_SUITE ($SRC_LIST)"
    printf '%s\n' "$want" >"$SRC_LIST"
    APT_UPDATED=0
    apt_update
  fi
}

src_version() {
  apt-cache showsrc "$SRCPKG" 2>/dev/null |
    awk '/^Version:/ { print $2 }' | sort -V | tail -n1
}

src_checksums() {
  # "sha256 filename" for every file of source version $1, from the index.
  apt-cache showsrc "$SRCPKG" 2>/dev/null | awk -v ver="$1" '
    /^Package:/ { inver = 0; insec = 0 }
    /^Version:/ { inver = ($2 == ver) }
    /^[^ ]/ && !/^Checksums-Sha256:/ { insec = 0 }
    /^Checksums-Sha256:/ { insec = 1; next }
    inver && insec && /^ / { print $1, $3 }'
}

ensure_debs() {
  local missing=() p
  for p in "$@"; do
    dpkg-query -W -f='${db:Status-Status}' "$p" 2>/dev/null | grep -qx installed || missing+=("$p")
  done
  ((${#missing[@]})) || return 0
  log "apt-get install ${missing[*]}"
  if ! apt-get install -y -q --no-install-recommends "${missing[@]}" >/dev/null; then
    apt_update
    apt-get install -y -q --no-install-recommends "${missing[@]}" >/dev/null ||
      die "apt-get install ${missing[*]} failed"
  fi
}

# --- source: apt-get source, with a checksum-verified fallback --------------

fetch_source() {
  # $1 = version, $2 = directory to extract into (must not exist)
  local ver=$1 dest=$2
  local dl="$CACHE/src/$ver" file sha got
  mkdir -p "$dl"
  chown _apt "$dl" 2>/dev/null || true
  (cd "$dl" && apt-get source -q --download-only "$SRCPKG=$ver" >/dev/null 2>&1) || true
  # Verify every file apt lists for this version (SHA256 from the Sources
  # index); some mirrors do not serve the .dsc, which is only needed by
  # dpkg-source, so it may be missing if we can unpack by hand.
  local have_dsc=0 tarballs=()
  while read -r sha file; do
    if [[ ! -f $dl/$file ]]; then
      [[ $file == *.dsc ]] && continue
      die "could not download $file of $SRCPKG $ver"
    fi
    got=$(sha256sum "$dl/$file" | awk '{print $1}')
    [[ $got == "$sha" ]] || die "checksum mismatch for $file"
    case $file in
      *.dsc) have_dsc=1 ;;
      *.tar.*) tarballs+=("$file") ;;
    esac
  done < <(src_checksums "$ver")
  ((${#tarballs[@]})) || die "apt-get source lists no files for $SRCPKG $ver (is the deb-src entry working?)"

  if ((have_dsc)); then
    dpkg-source -x "$dl"/*.dsc "$dest" >/dev/null
  else
    log "no .dsc from the mirror; unpacking the verified tarballs by hand"
    local orig debian
    orig=$(printf '%s\n' "${tarballs[@]}" | grep '\.orig\.tar\.' | head -n1)
    debian=$(printf '%s\n' "${tarballs[@]}" | grep '\.debian\.tar\.' | head -n1)
    [[ -n $orig ]] || die "no orig tarball for $SRCPKG $ver"
    mkdir -p "$dest"
    tar -xf "$dl/$orig" -C "$dest" --strip-components=1
    if [[ -n $debian ]]; then
      tar -xf "$dl/$debian" -C "$dest"
      if [[ -f $dest/debian/patches/series ]]; then
        local p
        while read -r p _; do
          [[ -z $p || $p == \#* ]] && continue
          patch -d "$dest" -p1 -s <"$dest/debian/patches/$p"
        done <"$dest/debian/patches/series"
      fi
    fi
  fi
  [[ -d $dest/validation && -d $dest/cmd/runtimetest ]] ||
    die "$SRCPKG $ver has no validation/ or cmd/runtimetest"
}

# --- main --------------------------------------------------------------------

mkdir -p "$CACHE"
ensure_src_entry
VER=$(src_version)
if [[ -z $VER ]]; then
  apt_update
  VER=$(src_version)
fi
[[ -n $VER ]] || die "apt-cache showsrc $SRCPKG finds nothing"

ensure_debs "${GO_DEBS[@]}" "${TOOL_DEBS[@]}" "${REF_RUNTIME_DEBS[@]}"
GOVER=$(go version 2>/dev/null || /usr/lib/go/bin/go version)

KEY=$( { echo "$VER"; echo "$GOVER"; cat "$HERE/build.sh" "$HERE"/tap/*.go; } | sha256sum | cut -c1-16)
OUT=$CACHE/suite-$KEY

if [[ -f $OUT/.complete ]]; then
  log "cached: $SRCPKG $VER ($OUT)"
else
  log "building $SRCPKG $VER with $GOVER"
  WORK=$(mktemp -d "$CACHE/build.XXXXXX")
  trap 'rm -rf "$WORK"' EXIT
  GP=$WORK/gopath
  RT=$GP/src/github.com/opencontainers/runtime-tools
  mkdir -p "$GP/src/github.com/opencontainers" "$GP/src/github.com/mndrix/tap-go"
  fetch_source "$VER" "$RT"
  cp "$HERE"/tap/*.go "$GP/src/github.com/mndrix/tap-go/"

  export GOPATH="$GP:/usr/share/gocode" GO111MODULE=off GOFLAGS= GOCACHE="$CACHE/gocache" CGO_ENABLED=0
  export PATH="$PATH:/usr/lib/go/bin"
  STAGE=$WORK/out
  mkdir -p "$STAGE/validation"
  (
    cd "$RT"
    uver=$(cat VERSION 2>/dev/null || echo "$VER")
    go build -tags "netgo osusergo" \
      -ldflags "-X main.version=$uver -X main.gitCommit=debian-$VER" \
      -o "$STAGE/runtimetest" ./cmd/runtimetest
    go build -o "$WORK/bin/" ./validation/...
  )
  n=0
  for d in "$RT"/validation/*/; do
    name=$(basename "$d")
    [[ $name == util ]] && continue
    [[ -x $WORK/bin/$name ]] || die "validation/$name did not build"
    mv "$WORK/bin/$name" "$STAGE/validation/$name.t"
    n=$((n + 1))
  done
  cp "$RT/rootfs-amd64.tar.gz" "$STAGE/"
  echo "$VER" >"$STAGE/VERSION"
  echo "$GOVER" >"$STAGE/GOVERSION"
  touch "$STAGE/.complete"
  rm -rf "$OUT"
  mv "$STAGE" "$OUT"
  log "built runtimetest and $n validation programs in $OUT"
fi

ln -sfn "suite-$KEY" "$CACHE/suite"
# Drop stale builds of other keys.
for old in "$CACHE"/suite-*; do
  [[ $old == "$OUT" ]] || rm -rf "$old"
done
echo "$OUT"
