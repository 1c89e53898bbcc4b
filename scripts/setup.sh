#!/usr/bin/env bash
# Installs everything axiscope needs to build, serve and test, from the registries that are
# reachable (crates.io, PyPI, npm, Debian apt). Idempotent: each step checks first and takes
# well under a second when its tool is already there. A cold run spends most of its time in
# `cargo install trunk` (~7 min on 2 cores) and `cargo install wasm-bindgen-cli` (~3 min).
#
# Steps: the wasm32 Rust target; apt packages (Chromium, its driver, the Vulkan CPU driver);
# the npm packages of tests/e2e (playwright-core, binaryen 132 for wasm-opt); the model;
# Trunk; wasm-bindgen-cli at the version in Cargo.lock.
set -euo pipefail

cd "$(dirname "$0")/.."
ROOT="$PWD"

TRUNK_VERSION="0.21.14"
WASM_OPT_VERSION="132"
NODE_MIN_MAJOR=20
E2E="tests/e2e"
export PATH="$HOME/.cargo/bin:$ROOT/$E2E/node_modules/.bin:$PATH"

SETUP_START=$SECONDS
STEP=""
STEP_START=0
step() {
  STEP="$1"
  STEP_START=$SECONDS
}
done_step() { echo "setup: [$STEP] $1 ($((SECONDS - STEP_START)) s)"; }
fail() {
  echo "setup: [$STEP] error: $1" >&2
  echo "setup: [$STEP] fix: $2" >&2
  exit 1
}

# --- Rust ---------------------------------------------------------------------------------
step rust
command -v cargo >/dev/null && command -v rustup >/dev/null ||
  fail "cargo/rustup not found" "install Rust 1.95 with rustup (https://rustup.rs), then open a new shell"
if ! rustup target list --installed | grep -qx wasm32-unknown-unknown; then
  rustup target add wasm32-unknown-unknown ||
    fail "could not add the wasm32-unknown-unknown target" "run: rustup target add wasm32-unknown-unknown"
fi
for component in rustfmt clippy; do
  rustup component list --installed | grep -q "^$component" || rustup component add "$component" ||
    fail "could not add the $component component" "run: rustup component add $component"
done
done_step "$(rustc --version | cut -d' ' -f1-2), target wasm32-unknown-unknown, rustfmt, clippy"

# --- apt: Chromium for the browser tests, lavapipe (CPU Vulkan) for native wgpu tests ---------
step apt
APT_PACKAGES=(chromium chromium-driver mesa-vulkan-drivers libvulkan1 fonts-liberation)
command -v cc >/dev/null || APT_PACKAGES+=(build-essential)
command -v node >/dev/null || APT_PACKAGES+=(nodejs npm)
python3 -m pip --version >/dev/null 2>&1 || APT_PACKAGES+=(python3 python3-pip)
missing=()
for pkg in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
if ((${#missing[@]})); then
  SUDO=()
  if [[ $EUID -ne 0 ]]; then
    command -v sudo >/dev/null || fail "need root to install: ${missing[*]}" "as root run: apt-get update && apt-get install -y ${missing[*]}"
    SUDO=(sudo -n)
  fi
  echo "setup: [apt] installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  "${SUDO[@]}" apt-get update -qq ||
    fail "apt-get update failed" "check network access to the Debian mirrors in /etc/apt/sources.list*"
  "${SUDO[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null ||
    fail "apt-get install ${missing[*]} failed" "run it by hand to see why: apt-get install ${missing[*]}"
fi
[[ -x /usr/bin/chromium ]] || fail "/usr/bin/chromium is missing after install" "apt-get install --reinstall chromium"
done_step "ok${missing[*]:+, installed ${missing[*]}}"

# --- Node packages: playwright-core (drives Chromium), binaryen (wasm-opt) ----------------
step npm
command -v node >/dev/null && command -v npm >/dev/null ||
  fail "node/npm not found" "install Node.js $NODE_MIN_MAJOR+ with npm"
node_major="$(node -p 'process.versions.node.split(".")[0]')"
((node_major >= NODE_MIN_MAJOR)) ||
  fail "Node.js $(node --version) is too old (playwright-core needs $NODE_MIN_MAJOR+)" \
    "install Node.js $NODE_MIN_MAJOR+ (e.g. from the NodeSource apt repository) and rerun"
lock_sha="$(sha256sum "$E2E/package-lock.json" | cut -d' ' -f1)"
stamp="$E2E/node_modules/.axiscope-lock-sha256"
if [[ "$(cat "$stamp" 2>/dev/null)" != "$lock_sha" ]]; then
  (cd "$E2E" && npm ci --no-audit --no-fund --loglevel=error) ||
    fail "npm ci in $E2E failed" "check access to registry.npmjs.org, then: cd $E2E && npm ci"
  echo "$lock_sha" >"$stamp"
fi
wasm_opt_version="$(wasm-opt --version 2>/dev/null || true)"
[[ "$wasm_opt_version" == "wasm-opt version $WASM_OPT_VERSION "* ]] ||
  fail "wasm-opt on PATH is '${wasm_opt_version:-missing}', need version $WASM_OPT_VERSION from npm binaryen" \
    "cd $E2E && rm -rf node_modules && npm ci (Debian's binaryen must not come first on PATH)"
done_step "node $(node --version), playwright-core $(node -p "require('./$E2E/node_modules/playwright-core/package.json').version"), wasm-opt $WASM_OPT_VERSION"

# --- The model ------------------------------------------------------------------------------
step model
scripts/fetch_model.sh || fail "scripts/fetch_model.sh failed (see above)" "fix what it says, then rerun"
done_step "ok"

# --- Trunk -----------------------------------------------------------------------------------
step trunk
if [[ "$(trunk --version 2>/dev/null)" != "trunk $TRUNK_VERSION" ]]; then
  echo "setup: [trunk] cargo install trunk $TRUNK_VERSION (~7 min on 2 cores)"
  # Trunk 0.22 needs a newer rustc than 1.95; --locked keeps its tested dependency set.
  cargo install trunk --version "$TRUNK_VERSION" --locked ||
    fail "cargo install trunk $TRUNK_VERSION failed" "check access to crates.io and that a C compiler (cc) is installed, then rerun"
fi
done_step "trunk $TRUNK_VERSION"

# --- wasm-bindgen-cli: must equal the wasm-bindgen crate in Cargo.lock -----------------------
step wasm-bindgen
wbg_version="$(awk '/^name = "wasm-bindgen"$/ { getline; gsub(/version = |"/, ""); print; exit }' Cargo.lock)"
[[ -n "$wbg_version" ]] || fail "no wasm-bindgen in Cargo.lock" "run: cargo generate-lockfile"
grep -qx "wasm_bindgen = \"$wbg_version\"" Trunk.toml ||
  fail "Trunk.toml [tools] wasm_bindgen differs from Cargo.lock's wasm-bindgen $wbg_version" \
    "set wasm_bindgen = \"$wbg_version\" in Trunk.toml (Trunk would try to download it otherwise)"
if [[ "$(wasm-bindgen --version 2>/dev/null)" != "wasm-bindgen $wbg_version" ]]; then
  echo "setup: [wasm-bindgen] cargo install wasm-bindgen-cli $wbg_version (~3 min on 2 cores)"
  # No --locked: its lockfile pins a yanked crate that no longer resolves.
  cargo install wasm-bindgen-cli --version "$wbg_version" --force ||
    fail "cargo install wasm-bindgen-cli $wbg_version failed" "check access to crates.io, then rerun"
fi
done_step "wasm-bindgen $wbg_version"

echo "setup: ready in $((SECONDS - SETUP_START)) s"
