#!/usr/bin/env bash
# Installs a software Vulkan driver (Mesa 25 lavapipe from Debian bookworm-backports) into a
# project-local folder, so that onnxruntime-node's WebGPU execution provider (Dawn over Vulkan)
# can be exercised on a machine without a GPU. Nothing is installed system-wide: bookworm's own
# Mesa 22.3 lavapipe is refused by Dawn ("No supported adapters": it lacks
# shaderUniform*ArrayDynamicIndexing), and upgrading the system Mesa from backports would change
# the whole machine's graphics stack.
#
# Usage: scripts/setup-webgpu.sh [--force] [DEST]      (DEST defaults to .cache/mesa)
#   then: . .cache/mesa/env.sh   (sets VK_ICD_FILENAMES, LD_LIBRARY_PATH, XDG_RUNTIME_DIR,
#         MESA_SHADER_CACHE_DIR)
#
# The env must be set before the process loads onnxruntime (the dynamic linker reads
# LD_LIBRARY_PATH at start-up, Dawn reads the rest when it first looks for an adapter), so
# source env.sh in the shell that starts node.
#
# Needs Debian bookworm with apt-get/dpkg-deb and the Debian archive reachable. Root is not
# required: apt runs on a private sources/lists/cache dir and only reads the system's dpkg
# status to learn which dependencies are already installed. Whatever lavapipe needs that the
# machine lacks or has too old (on the project machines: libdrm2, libdrm-amdgpu1, libdrm-common;
# on a bare bookworm also libllvm15, the Vulkan loader libvulkan1, the xcb/wayland client libs)
# is downloaded and unpacked into DEST too. Idempotent: once done, a re-run makes no network
# access and only re-checks the libraries; --force refetches.
#
# Overrides: MESA_DEBIAN_MIRROR (archive URL; default: the one this machine's apt sources use
# for the release), MESA_SUITE (default <codename>-backports), MESA_PACKAGE (default
# mesa-vulkan-drivers), MESA_DPKG_STATUS (dpkg status file apt resolves against; default the
# system's; another one shows what a barer machine would fetch).

set -euo pipefail

FORCE=0
DEST=""
for a in "$@"; do
  case "$a" in
    --force) FORCE=1 ;;
    -h|--help) sed -n '2,28p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    -*) echo "setup-webgpu: unknown option $a" >&2; exit 2 ;;
    *) DEST="$a" ;;
  esac
done

ROOT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
DEST="${DEST:-$ROOT_DIR/.cache/mesa}"
mkdir -p "$DEST"
DEST="$(cd "$DEST" && pwd)"   # absolute: the ICD json and env.sh must not depend on the cwd
START=$(date +%s.%N)

die() { echo "setup-webgpu: $*" >&2; exit 1; }
log() { echo "setup-webgpu: $*" >&2; }

for tool in apt-get apt-cache dpkg-deb dpkg ldd; do
  command -v "$tool" >/dev/null || die "'$tool' not found; this script needs Debian (bookworm) with apt."
done

ICD="$DEST/lvp_icd.json"
STAMP="$DEST/.installed"

if [ "$FORCE" = 0 ] && [ -f "$STAMP" ] && [ -f "$ICD" ] && [ -f "$DEST/env.sh" ]; then
  log "$(cat "$STAMP") already unpacked in $DEST (--force to refetch)"
else
  # shellcheck disable=SC1091
  CODENAME="$(. /etc/os-release && echo "${VERSION_CODENAME:-}")"
  [ -n "$CODENAME" ] || die "cannot read VERSION_CODENAME from /etc/os-release"
  if [ "$CODENAME" != bookworm ] && [ -z "${MESA_SUITE:-}" ]; then
    log "warning: this recipe targets Debian bookworm, found '$CODENAME' (set MESA_SUITE to override)."
  fi
  SUITE="${MESA_SUITE:-$CODENAME-backports}"
  PKG="${MESA_PACKAGE:-mesa-vulkan-drivers}"

  # ---- The Debian mirror this machine already uses (CI may reach only that host). ----
  find_mirror() {
    local f
    # deb822 .sources files: the first enabled "deb" stanza whose Suites contain the codename.
    for f in /etc/apt/sources.list.d/*.sources; do
      [ -f "$f" ] || continue
      awk -v code="$CODENAME" '
        function flush() {
          if (uris != "" && enabled && (" " suites " ") ~ (" " code " ") && (" " types " ") ~ / deb /) {
            split(uris, u, " "); print u[1]; done = 1; exit
          }
          uris = ""; suites = ""; types = ""; enabled = 1
        }
        BEGIN { enabled = 1 }
        /^[ \t]*#/ { next }
        /^[ \t]*$/ { flush(); next }
        {
          key = tolower($1); sub(/:$/, "", key); $1 = ""; sub(/^ +/, "")
          if (key == "uris") uris = $0; else if (key == "suites") suites = $0
          else if (key == "types") types = $0; else if (key == "enabled") enabled = (tolower($0) != "no")
        }
        END { if (!done) flush() }
      ' "$f"
    done
    # One-line format: "deb [options] URI SUITE COMPONENTS...".
    for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
      [ -f "$f" ] || continue
      awk -v code="$CODENAME" '
        $1 == "deb" { i = 2; if ($i ~ /^\[/) { while ($i !~ /\]$/) i++; i++ } if ($(i + 1) == code) print $i }
      ' "$f"
    done
  }
  MIRROR="${MESA_DEBIAN_MIRROR:-$(find_mirror | head -n1)}"
  [ -n "$MIRROR" ] || die "no Debian '$CODENAME' entry in /etc/apt/sources.list(.d); set MESA_DEBIAN_MIRROR to the archive URL."
  MIRROR="${MIRROR%/}"
  KEYRING=/usr/share/keyrings/debian-archive-keyring.gpg
  [ -f "$KEYRING" ] || die "$KEYRING missing (package debian-archive-keyring)."

  # ---- Private apt: own sources, lists and cache; the system's dpkg status is only read. ----
  APTDIR="$DEST/apt"
  rm -rf "$APTDIR"
  mkdir -p "$APTDIR/sources.list.d" "$APTDIR/preferences.d" "$APTDIR/lists/partial" "$APTDIR/archives/partial" "$APTDIR/debs"
  # Both suites: the driver comes from backports; dependencies bookworm can satisfy stay
  # bookworm's (what the backports build was linked against).
  cat > "$APTDIR/sources.list.d/debian.sources" <<EOF
Types: deb
URIs: $MIRROR
Suites: $CODENAME $SUITE
Components: main
Signed-By: $KEYRING
EOF
  APT_OPTS=(
    -q
    -o "Dir::Etc::SourceList=/dev/null"
    -o "Dir::Etc::SourceParts=$APTDIR/sources.list.d"
    -o "Dir::Etc::Preferences=/dev/null"
    -o "Dir::Etc::PreferencesParts=$APTDIR/preferences.d"
    -o "Dir::State::Lists=$APTDIR/lists"
    -o "Dir::State::status=${MESA_DPKG_STATUS:-/var/lib/dpkg/status}"
    -o "Dir::Cache=$APTDIR"
    -o "Dir::Cache::Archives=$APTDIR/archives"
    -o "Dir::Cache::pkgcache="
    -o "Dir::Cache::srcpkgcache="
    # Private dirs need no system lock; downloads as the invoking user (apt would otherwise
    # drop to _apt, which cannot write into a root-owned project folder).
    -o "Debug::NoLocking=1"
    -o "APT::Sandbox::User=$(id -un)"
    -o "Acquire::Languages=none"
    -o "Acquire::Retries=3"
  )

  log "apt lists for $CODENAME + $SUITE from $MIRROR (private dir $APTDIR)"
  apt-get "${APT_OPTS[@]}" update >&2 || die "apt-get update failed for $MIRROR $SUITE (is the archive reachable?)"
  VERSION="$(apt-cache "${APT_OPTS[@]}" madison "$PKG" | awk -v s="$SUITE" 'index($0, " " s "/") { print $3; exit }')"
  [ -n "$VERSION" ] || die "$PKG is not in $SUITE on $MIRROR"

  # What installing the backports driver would pull in, given what this machine already has:
  # apt's resolver in simulation mode (no root, no changes), then plain downloads of that set.
  SIM="$(apt-get "${APT_OPTS[@]}" -s install --no-install-recommends "$PKG/$SUITE" 2>&1)" \
    || { echo "$SIM" >&2; die "apt cannot resolve $PKG/$SUITE against this machine's packages"; }
  # Lines look like "Inst libdrm2 [2.4.114-1+b1] (2.4.123-1~bpo12+1 Debian Backports:...)".
  mapfile -t WANT < <(echo "$SIM" | awk '$1 == "Inst" { v = $0; sub(/^[^(]*\(/, "", v); split(v, p, " "); print $2 "=" p[1] }')
  [ "${#WANT[@]}" -gt 0 ] || die "apt planned nothing to fetch for $PKG/$SUITE (installed system-wide already?)"
  log "fetching ${#WANT[@]} packages: ${WANT[*]}"
  (cd "$APTDIR/debs" && apt-get "${APT_OPTS[@]}" download "${WANT[@]}" >&2) || die "apt-get download failed"
  rm -rf "$DEST/root" "$STAMP"
  mkdir -p "$DEST/root"
  for deb in "$APTDIR"/debs/*.deb; do dpkg-deb -x "$deb" "$DEST/root"; done
  # Lists and .debs are only needed again with --force (~30 MB).
  rm -rf "$APTDIR"

  # Only lavapipe is used; the hardware drivers from the same package are ~50 MB of dead weight.
  find "$DEST/root" -name 'libvulkan_*.so' ! -name 'libvulkan_lvp.so' -delete
  find "$DEST/root/usr/share/vulkan/icd.d" -name '*.json' ! -name 'lvp_icd*' -delete 2>/dev/null || true
  LVP="$(find "$DEST/root" -name 'libvulkan_lvp.so' | head -n1)"
  SRC_ICD="$(find "$DEST/root/usr/share/vulkan/icd.d" -name 'lvp_icd*.json' 2>/dev/null | head -n1)"
  [ -n "$LVP" ] && [ -n "$SRC_ICD" ] || die "lavapipe (libvulkan_lvp.so, lvp_icd*.json) not found in the unpacked $PKG"
  # The shipped manifest names the library by a system path or bare soname; ours must be absolute.
  sed -E "s#\"library_path\"[[:space:]]*:[[:space:]]*\"[^\"]*\"#\"library_path\": \"$LVP\"#" "$SRC_ICD" > "$ICD"
  grep -q "\"library_path\": \"$LVP\"" "$ICD" || die "could not rewrite library_path in $ICD"

  # Every folder holding an unpacked shared library: on a bare machine this includes libLLVM-15
  # and the Vulkan loader itself, which Dawn dlopen()s by soname (libvulkan.so.1).
  LIBDIRS="$(find "$DEST/root" -name '*.so*' \( -type f -o -type l \) -printf '%h\n' | sort -u | paste -sd: -)"
  cat > "$DEST/env.sh" <<EOF
# Generated by scripts/setup-webgpu.sh for $PKG $VERSION ($SUITE). Source before starting node.
export VK_ICD_FILENAMES='$ICD'
export LD_LIBRARY_PATH='$LIBDIRS'\${LD_LIBRARY_PATH:+:\$LD_LIBRARY_PATH}
export XDG_RUNTIME_DIR='$DEST/xdg-runtime'
# Compiled shaders (lavapipe spends ~0.3 s of LLVM per pipeline) stay with the driver, not in ~/.cache.
export MESA_SHADER_CACHE_DIR='$DEST/shader-cache'
EOF
  echo "$PKG=$VERSION" > "$STAMP"
fi

# Mesa's Wayland client code rejects an XDG_RUNTIME_DIR that is missing or not private.
mkdir -p "$DEST/xdg-runtime"
chmod 0700 "$DEST/xdg-runtime"

# ---- Every library lavapipe links against must resolve (what bookworm lacks shows here). ----
(
  # shellcheck disable=SC1091
  . "$DEST/env.sh"
  LVP="$(sed -nE 's/.*"library_path": "([^"]*)".*/\1/p' "$ICD")"
  [ -f "$LVP" ] || die "$LVP is missing; run with --force"
  MISSING="$(ldd "$LVP" 2>&1 | grep -E 'not found' || true)"
  [ -z "$MISSING" ] || die "libvulkan_lvp.so has unresolved libraries (run with --force):
$MISSING"
  # Dawn dlopen()s the Vulkan loader: the system's libvulkan1 or the copy unpacked above.
  # (Captured first: with pipefail, grep -q closing the pipe early would fail the pipeline.)
  SYSLIBS="$(ldconfig -p 2>/dev/null || true)"
  if ! grep -q 'libvulkan\.so\.1 ' <<<"$SYSLIBS" && [ -z "$(find "$DEST/root" -name 'libvulkan.so.1' -print -quit)" ]; then
    die "no Vulkan loader (libvulkan.so.1) on this machine or in $DEST; run with --force"
  fi
)

END=$(date +%s.%N)
log "lavapipe ready in $DEST ($(awk -v a="$START" -v b="$END" 'BEGIN { printf "%.1f", b - a }') s); use: . $DEST/env.sh"
cat "$DEST/env.sh"
