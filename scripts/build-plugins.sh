#!/usr/bin/env bash
# Builds every plugin (plugins/*) and test guest (tests/guests/*) as a wasm32-wasip2
# component in one cargo invocation, then puts each next to its manifest:
#   target/plugins/<crate-dir>.{wasm,toml}      bundled plugins (what `tessera serve` loads)
#   target/test-guests/<crate-dir>.{wasm,toml}  guests only the tests use
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

target_dir="${CARGO_TARGET_DIR:-$root/target}"
plugins_dir="$target_dir/plugins"
guests_dir="$target_dir/test-guests"
wasm_dir="$target_dir/wasm32-wasip2/release"

rustup target add wasm32-wasip2 >/dev/null

# Crate directories, their package names and artifact names (dashes become underscores).
dirs=()
packages=()
for manifest in plugins/*/Cargo.toml tests/guests/*/Cargo.toml; do
    [[ -f "$manifest" ]] || continue
    dir="$(dirname "$manifest")"
    if [[ ! -f "$dir/plugin.toml" ]]; then
        echo "error: $dir has no plugin.toml" >&2
        exit 1
    fi
    package="$(sed -n 's/^name *= *"\(.*\)"/\1/p' "$manifest" | head -n 1)"
    if [[ -z "$package" ]]; then
        echo "error: no package name in $manifest" >&2
        exit 1
    fi
    dirs+=("$dir")
    packages+=("$package")
done
if [[ ${#packages[@]} -eq 0 ]]; then
    echo "error: no plugin crates found" >&2
    exit 1
fi

cargo_args=()
for package in "${packages[@]}"; do
    cargo_args+=(-p "$package")
done
# Components ship without debug info: a third of the size, and nothing reads it.
cargo build --release --target wasm32-wasip2 \
    --config 'profile.release.debug=false' --config 'profile.release.strip=true' \
    "${cargo_args[@]}"

mkdir -p "$plugins_dir" "$guests_dir"
# The component-model binary header: magic "\0asm", then version 0x0d and layer 0x01.
component_header="0061736d0d000100"
status=0
for i in "${!dirs[@]}"; do
    dir="${dirs[$i]}"
    name="$(basename "$dir")"
    case "$dir" in
        plugins/*) out_dir="$plugins_dir" ;;
        *) out_dir="$guests_dir" ;;
    esac
    artifact="$wasm_dir/${packages[$i]//-/_}.wasm"
    if [[ ! -f "$artifact" ]]; then
        echo "error: $artifact was not built" >&2
        status=1
        continue
    fi
    header="$(head -c 8 "$artifact" | od -An -tx1 | tr -d ' \n')"
    if [[ "$header" != "$component_header" ]]; then
        echo "error: $artifact is not a component (header $header, want $component_header)" >&2
        status=1
        continue
    fi
    cp "$artifact" "$out_dir/$name.wasm"
    cp "$dir/plugin.toml" "$out_dir/$name.toml"
    printf '%-28s %10s bytes\n' "$name.wasm" "$(wc -c <"$out_dir/$name.wasm" | tr -d ' ')"
done
if [[ $status -ne 0 ]]; then
    exit "$status"
fi
echo "components and manifests are in $plugins_dir and $guests_dir"
